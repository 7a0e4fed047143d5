"""Asset checks encoding the span/label invariants. Blocking where a failure makes downstream
results meaningless; each failing check names the problems and sentences concerned."""


import dagster as dg
import pandas as pd

from ta_platform.anchors import invariants, schemas
from ta_platform.anchors.invariants import InvariantResult
from ta_platform.defs.resources import MetadataStoreResource, StudySettings
from ta_platform.defs.thought_anchors.assets import problem_index, sentence_labels, sentence_spans
from ta_platform.store import artifacts

WARN = dg.AssetCheckSeverity.WARN


def _read(name: str) -> pd.DataFrame:
    return pd.read_parquet(artifacts.thought_anchor_file(name))


def _to_check(result: InvariantResult, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=result.passed, severity=severity, metadata=result.metadata())


def _schema_check(*pairs: tuple) -> dg.AssetCheckResult:
    """Validate each (schema, frame) pair; every failure line goes into the check's metadata."""
    failures = [line for schema, frame in pairs for line in schemas.schema_failures(schema, frame)]
    return dg.AssetCheckResult(passed=not failures, metadata={"n_failures": len(failures), "failures": failures[:50]})


@dg.asset_check(asset=problem_index, description="No trace was skipped as malformed (skip-and-record policy).")
def no_skipped_traces(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    faults = metadata_store.store().read_table("faults")
    rows = [] if faults.empty else [f"[{r.stage}] {r.item}: {r.path}: {r.problem}" for r in faults.itertuples()]
    return dg.AssetCheckResult(passed=not rows, severity=WARN, metadata={"n_skipped": len(rows), "skipped": rows[:50]})


@dg.asset_check(asset=problem_index, blocking=True, description="problem_index matches its pandera schema.")
def problem_index_schema(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    return _schema_check((schemas.problem_index_schema, metadata_store.store().read_table("problem_index")))


@dg.asset_check(asset=sentence_labels, blocking=True, description="chunk_idx runs 0..N-1 in every trace.")
def chunk_indices_contiguous() -> dg.AssetCheckResult:
    return _to_check(invariants.chunk_indices_contiguous(_read(artifacts.LABELS)))


@dg.asset_check(asset=sentence_labels, blocking=True, description="No NaN/inf importance.")
def importances_finite() -> dg.AssetCheckResult:
    return _to_check(invariants.importances_finite(_read(artifacts.LABELS)))


@dg.asset_check(asset=sentence_labels, blocking=True, description="Anchor prevalence inside the configured band.")
def anchor_prevalence_in_band(settings: StudySettings) -> dg.AssetCheckResult:
    result = invariants.anchor_prevalence_in_band(_read(artifacts.LABELS), settings.prevalence_low, settings.prevalence_high)
    return _to_check(result)


@dg.asset_check(asset=sentence_labels, description="Every trace has an anchor and a non-anchor (reported).")
def traces_have_both_classes() -> dg.AssetCheckResult:
    return _to_check(invariants.traces_have_both_classes(_read(artifacts.LABELS)), WARN)


@dg.asset_check(asset=sentence_labels, blocking=True, description="No problem id in two of train/val/test.")
def problems_in_one_split() -> dg.AssetCheckResult:
    return _to_check(invariants.problems_in_one_split(_read(artifacts.LABELS)))


@dg.asset_check(asset=sentence_labels, blocking=True, description="sentence_labels matches its pandera schema.")
def sentence_labels_schema() -> dg.AssetCheckResult:
    return _schema_check((schemas.sentence_labels_schema, _read(artifacts.LABELS)))


@dg.asset_check(asset=sentence_spans, blocking=True, additional_deps=[sentence_labels],
                description="Every labelled sentence has a character span.")
def every_sentence_aligned() -> dg.AssetCheckResult:
    return _to_check(invariants.every_sentence_aligned(_read(artifacts.LABELS), _read(artifacts.CHAR_SPANS)))


@dg.asset_check(asset=sentence_spans, blocking=True,
                description="Spans ordered, non-overlapping, inside the think region, gaps whitespace only.")
def char_spans_well_formed() -> dg.AssetCheckResult:
    return _to_check(invariants.char_spans_well_formed(_read(artifacts.CHAR_SPANS), _read(artifacts.SNAPSHOT)))


@dg.asset_check(asset=sentence_spans, blocking=True, description="Token spans non-empty and inside the sequence.")
def token_spans_well_formed() -> dg.AssetCheckResult:
    return _to_check(invariants.token_spans_well_formed(_read(artifacts.TOKEN_SPANS)))


@dg.asset_check(asset=sentence_spans, blocking=True, description="Span tables match their pandera schemas.")
def sentence_spans_schema() -> dg.AssetCheckResult:
    return _schema_check((schemas.sentence_spans_schema, _read(artifacts.CHAR_SPANS)),
                         (schemas.token_spans_schema, _read(artifacts.TOKEN_SPANS)))
