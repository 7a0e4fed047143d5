"""The declared DuckDB schema of every table the platform writes through ``MetadataStore``.

Why declared, not inferred: a table created from the first frame written takes that frame's types,
and an empty frame has none. The ``faults`` table used to be created from an empty list of faults,
so its columns were typed ``NULL`` and the first real fault (a trace too long for a model) failed
with ``ConversionException: Unimplemented type for cast (VARCHAR -> "NULL")``. Here every table's
columns and types are written down once; ``MetadataStore.replace_slice`` creates tables from these
declarations and refuses a frame whose columns differ, naming the table.

Tables built by the SQL models in ``dbt_like_sql/`` are not declared here: ``sql_models.py`` builds
them with ``CREATE OR REPLACE TABLE ... AS SELECT``, so DuckDB types them from the query over these
declared tables (never from an empty frame).

Types are DuckDB's canonical names (as ``information_schema.columns.data_type`` reports them), so a
stored table can be compared with its declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ta_platform.rollouts.layout import TRACE_FILES

VARCHAR, BIGINT, DOUBLE, BOOLEAN = "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN"


class UndeclaredTableError(KeyError):
    """A write to a table with no declared schema."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class TableSchemaError(ValueError):
    """A frame whose columns do not match its table's declared schema."""


@dataclass(frozen=True)
class TableSchema:
    """One DuckDB table: its name, its columns in order with their DuckDB types, and what it holds."""

    name: str
    columns: tuple[tuple[str, str], ...]
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [column for column, _ in self.columns]

    def create_sql(self, *, replace: bool = False) -> str:
        """``CREATE TABLE`` with every column typed explicitly (IF NOT EXISTS, or OR REPLACE)."""
        body = ", ".join(f'"{column}" {dtype}' for column, dtype in self.columns)
        head = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
        return f'{head} "{self.name}" ({body})'

    def check_columns(self, columns: list[str]) -> None:
        """Raise ``TableSchemaError`` naming the table and the missing/undeclared columns."""
        declared = self.column_names
        missing = [c for c in declared if c not in columns]
        extra = [c for c in columns if c not in declared]
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if missing or extra or duplicated:
            problems = []
            if missing:
                problems.append(f"missing column(s) {missing}")
            if extra:
                problems.append(f"undeclared column(s) {extra}")
            if duplicated:
                problems.append(f"duplicated column(s) {duplicated}")
            raise TableSchemaError(
                f"table {self.name!r}: frame has {' and '.join(problems)}; declared columns are {declared} "
                f"(ta_platform/store/tables.py)"
            )


def _table(name: str, description: str, **columns: str) -> TableSchema:
    return TableSchema(name, tuple(columns.items()), description)


_FILE_HASHES = {f"sha256_{name.split('.')[0]}": VARCHAR for name in sorted(TRACE_FILES)}

DECLARED: tuple[TableSchema, ...] = (
    # thought anchors (data stage)
    _table("faults", "Every skipped item, per stage (load, align, tokenize, extract:<model>).",
           stage=VARCHAR, item=VARCHAR, path=VARCHAR, kind=VARCHAR, problem=VARCHAR),
    _table("problem_index", "One row per loaded trace.",
           trace_key=VARCHAR, model=VARCHAR, split=VARCHAR, setting=VARCHAR, problem_id=VARCHAR,
           is_correct=BOOLEAN, n_sentences=BIGINT, think_start=BIGINT, think_end=BIGINT, source=VARCHAR,
           content_hash=VARCHAR, **_FILE_HASHES),
    _table("sentence_labels", "One row per sentence: position, tag, importances, anchor label, problem split.",
           trace_key=VARCHAR, model=VARCHAR, split=VARCHAR, setting=VARCHAR, problem_id=VARCHAR,
           chunk_idx=BIGINT, n_chunks=BIGINT, rel_position=DOUBLE, function_tag=VARCHAR,
           counterfactual_importance=DOUBLE, resampling_importance=DOUBLE, is_last_chunk=BOOLEAN,
           in_label_set=BOOLEAN, anchor_score=DOUBLE, anchor=BIGINT, data_split=VARCHAR),
    _table("sentence_spans", "Character span of every sentence in full_cot.",
           trace_key=VARCHAR, chunk_idx=BIGINT, char_start=BIGINT, char_end=BIGINT, match=VARCHAR),
    _table("token_spans", "Token span of every sentence, per tokenizer (end exclusive).",
           tokenizer=VARCHAR, trace_key=VARCHAR, chunk_idx=BIGINT, tok_start=BIGINT, tok_end=BIGINT,
           n_tokens=BIGINT),
    _table("label_verification", "One row per chunk of the verified trace: importances recomputed from its "
           "rollouts beside the labelled ones (defs/thought_anchors/verification.py).",
           trace_key=VARCHAR, chunk_idx=BIGINT, n_rollouts=BIGINT, n_failed=BIGINT, n_dissimilar=BIGINT,
           n_removed_mismatch=BIGINT, min_similarity=DOUBLE, accuracy_recomputed=DOUBLE, accuracy_labelled=DOUBLE,
           accuracy_abs_diff=DOUBLE, counterfactual_recomputed=DOUBLE, counterfactual_labelled=DOUBLE,
           counterfactual_abs_diff=DOUBLE, resampling_recomputed=DOUBLE, resampling_labelled=DOUBLE,
           resampling_abs_diff=DOUBLE),
    # probes
    _table("probe_metrics", "Long-format probe metrics per seed and model x layer x setting, keyed by the probe "
           "config that made them (config_hash).",
           seed=BIGINT, probe=VARCHAR, metric=VARCHAR, value=DOUBLE, model_key=VARCHAR, layer_key=VARCHAR,
           setting=VARCHAR, config_hash=VARCHAR),
    _table("tripwire_results", "One row per tripwire and scope; metrics is a JSON object.",
           tripwire=VARCHAR, model_key=VARCHAR, layer_key=VARCHAR, setting=VARCHAR, passed=BOOLEAN,
           reason_code=VARCHAR, detail=VARCHAR, metrics=VARCHAR),
    _table("scaling_summary", "The model x setting matrix: the probe chosen on validation, its test PR-AUC beside "
           "the position and text baselines, margins with intervals over test problems, tripwires, gate.",
           model_key=VARCHAR, setting=VARCHAR, scheme=VARCHAR, n_test_problems=BIGINT, n_seeds=BIGINT,
           seeds=VARCHAR, selected=VARCHAR, selected_on=VARCHAR, probe_pr_auc=DOUBLE, probe_std=DOUBLE,
           position_pr_auc=DOUBLE, text_pr_auc=DOUBLE, margin_position=DOUBLE, ci_low_position=DOUBLE,
           ci_high_position=DOUBLE, margin_text=DOUBLE, ci_low_text=DOUBLE, ci_high_text=DOUBLE,
           n_resamples=BIGINT, tripwire_status=VARCHAR, config_hash=VARCHAR, gate=VARCHAR),
    # backtracking lag study (ta_platform/chains, defs/backtracking)
    _table("backtracking_probe_metrics", "Lag probes and baselines on test chains: one row per model, layer, "
           "lag (activation at t predicts the label at t + lag), probe, metric and seed.",
           model=VARCHAR, layer=VARCHAR, lag=BIGINT, probe=VARCHAR, metric=VARCHAR, value=DOUBLE, seed=BIGINT),
    _table("backtracking_probe_margins", "Per seed: lag probe AUROC minus each baseline's on the test chains (and "
           "minus the best on validation, named in chosen), per target (span, onset); points only, the interval "
           "is across seeds in backtracking_margin_summary.",
           model=VARCHAR, layer=VARCHAR, lag=BIGINT, target=VARCHAR, baseline=VARCHAR, metric=VARCHAR, margin=DOUBLE,
           chosen=VARCHAR, seed=BIGINT),
    _table("backtracking_splits", "The seed's one dataset-wide split, recorded before any slice runs and read by "
           "every slice and model: each chain with its problem unit (unit_id, a hash of the problem statement) "
           "and the split of that unit.",
           seed=BIGINT, chain_id=VARCHAR, unit_id=VARCHAR, split=VARCHAR),
    _table("backtracking_margin_summary", "Seed-averaged AUROC margin of the lag probe over each baseline that "
           "applies at the lag and over each seed's validation-best baseline, per target; ci_low/ci_high: "
           "percentile interval from resampling chain problems (unit) and recomputing the seed-averaged margin "
           "(statistic) on each draw (chains/intervals.py).",
           model=VARCHAR, layer=VARCHAR, lag=BIGINT, target=VARCHAR, baseline=VARCHAR, metric=VARCHAR, margin=DOUBLE,
           ci_low=DOUBLE, ci_high=DOUBLE, probe_auroc=DOUBLE, baseline_auroc=DOUBLE, chosen=VARCHAR, n_seeds=BIGINT,
           n_units=BIGINT, n_valid_resamples=BIGINT, unit=VARCHAR, statistic=VARCHAR),
    _table("backtracking_tripwire_results", "The backtracking study's tripwires; metrics is a JSON object.",
           tripwire=VARCHAR, scope=VARCHAR, passed=BOOLEAN, reason_code=VARCHAR, detail=VARCHAR, metrics=VARCHAR),
    # needle token probes (ta_platform/needle, defs/needle)
    _table("needle_probe_metrics", "Needle token probe, baselines (token_identity, position) and the document "
           "monitor (doc_monitor_max, doc_monitor_topk): one row per model, layer, seed, probe, split and metric.",
           model=VARCHAR, layer=BIGINT, seed=BIGINT, probe=VARCHAR, split=VARCHAR, metric=VARCHAR, value=DOUBLE),
    _table("needle_summary", "Per model, layer, probe, split and metric: mean over seeds, seed min/max, and the "
           "mean document-bootstrap interval (AUROC).",
           model=VARCHAR, layer=BIGINT, probe=VARCHAR, split=VARCHAR, metric=VARCHAR, mean=DOUBLE, seed_min=DOUBLE,
           seed_max=DOUBLE, n_seeds=BIGINT, ci_low=DOUBLE, ci_high=DOUBLE),
    # preferences
    _table("task_pool", "Every task the judge may compare, with its disjoint task set.",
           task_id=VARCHAR, prompt=VARCHAR, origin=VARCHAR, topic=VARCHAR, task_set=VARCHAR),
    _table("pairwise_preferences", "Every judged comparison.",
           round=BIGINT, task_a=VARCHAR, task_b=VARCHAR, order=VARCHAR, sample_index=BIGINT, winner=VARCHAR,
           heldout=BOOLEAN, task_set=VARCHAR, p_a=DOUBLE),
    _table("thurstonian_utilities", "Fitted utility (mean, sd) per task.",
           task_id=VARCHAR, mu=DOUBLE, sigma=DOUBLE, task_set=VARCHAR),
    _table("thurstonian_fit_summary", "One row per fitted task set: fit quality and held-out accuracy.",
           task_set=VARCHAR, n_tasks=BIGINT, n_comparisons=BIGINT, n_pairs=BIGINT, prior_strength=DOUBLE,
           converged=BOOLEAN, n_iterations=BIGINT, train_log_loss=DOUBLE, heldout_source=VARCHAR,
           n_heldout=BIGINT, heldout_accuracy=DOUBLE, heldout_log_loss=DOUBLE, noise_ceiling=DOUBLE,
           fit_seconds=DOUBLE, validation_log_loss=DOUBLE, heldout_accuracy_low=DOUBLE,
           heldout_accuracy_high=DOUBLE, self_consistency=DOUBLE),
    _table("utility_probe_report", "Utility-probe metrics per feature set, target, scope and fold.",
           features=VARCHAR, target=VARCHAR, scope=VARCHAR, held_out_topic=VARCHAR, alpha=DOUBLE,
           metric=VARCHAR, value=DOUBLE, n=BIGINT, ci_low=DOUBLE, ci_high=DOUBLE),
    _table("preference_summary", "Mean metric per feature set, target, scope and metric (long format: the "
           "feature sets depend on the registry, so they are rows, not columns).",
           target=VARCHAR, scope=VARCHAR, metric=VARCHAR, features=VARCHAR, value=DOUBLE, n_folds=BIGINT,
           ci_low=DOUBLE, ci_high=DOUBLE),
    _table("judge_consistency", "Per task set: how a judge agrees with itself (orders, repeated samples).",
           task_set=VARCHAR, judge=VARCHAR, n_pairs=BIGINT, order_agreement=DOUBLE, sample_agreement=DOUBLE,
           accuracy_ceiling=DOUBLE, heldout_accuracy=DOUBLE),
    _table("ood_prompts", "The validated OOD system-prompt set: one row per (experiment, prompt, target).",
           experiment=VARCHAR, prompt_id=VARCHAR, category=VARCHAR, system_prompt=VARCHAR, target=VARCHAR,
           direction=DOUBLE),
    _table("ood_deltas", "Per (experiment, prompt, target task, features): behavioural and probe delta.",
           experiment=VARCHAR, prompt_id=VARCHAR, task_id=VARCHAR, features=VARCHAR, behavioural_delta=DOUBLE,
           probe_delta=DOUBLE, n_comparisons=BIGINT),
    _table("ood_results", "Per experiment and feature set: do probe deltas track behavioural deltas?",
           experiment=VARCHAR, features=VARCHAR, pearson_r=DOUBLE, spearman_r=DOUBLE, sign_agreement=DOUBLE,
           p_value=DOUBLE, n=BIGINT),
)

TABLES: Mapping[str, TableSchema] = {table.name: table for table in DECLARED}


def table_schema(name: str, tables: Mapping[str, TableSchema] = TABLES) -> TableSchema:
    """The declared schema of ``name``; ``UndeclaredTableError`` naming the table when there is none."""
    try:
        return tables[name]
    except KeyError:
        raise UndeclaredTableError(
            f"table {name!r} has no declared schema: add its columns and DuckDB types to "
            f"ta_platform/store/tables.py before writing it (declared: {sorted(tables)})"
        ) from None
