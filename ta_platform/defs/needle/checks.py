"""The needle study's checks; the logic is in ta_platform.needle.tripwires.

Blocking policy (docs/probing.md): bugs block, findings warn. Every check here detects a broken
pipeline (missing metadata, a split leak, a learnable null, a planted signal lost on the way) and is
blocking with ERROR severity -- except ``val_auroc_above_chance``: a probe that does not beat chance
on sound data is a result about the model, so it reports with WARN severity (listed by the release
gate, not blocking), as the anchors study's ``signal_beats_null`` does.
"""


import dagster as dg
import pandas as pd

from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.needle.assets import needle_probes, needle_token_activations
from ta_platform.defs.needle.settings import NeedleSettings


def _result(results: list, n: int, what: str,
            severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    failed = [r for r in results if not r.passed]
    if not results:
        return dg.AssetCheckResult(passed=False, severity=severity,
                                   metadata={"reason_code": "not_evaluated", "detail": f"no {what}"})
    return dg.AssetCheckResult(passed=not failed, severity=severity, metadata={
        "reason_code": ",".join(sorted({r.reason_code for r in failed})) or "ok", f"n_{what}": n,
        "n_failed": len(failed), "failed": [r.detail[:300] for r in failed][:20]})


@dg.asset_check(asset=needle_probes, blocking=False,
                description="A finding (WARN, not blocking): every probe's validation AUROC is above chance, the lower "
                            "end of its problem-group bootstrap interval exceeds 0.5 (the seed's 'all AUROC ~0.5 "
                            "means not learning').")
def val_auroc_above_chance(needle_settings: NeedleSettings) -> dg.AssetCheckResult:
    from ta_platform.needle.tripwires import val_auroc_above_chance as check
    from ta_platform.studies.needle import metadata_files, read_metadata

    files = metadata_files(needle_settings.dataset_config())
    results = [check(read_metadata(p).get("val_metrics", {}), p.name) for p in files]
    return _result(results, len(files), "probes", severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=needle_probes, blocking=True,
                description="Every (model, layer) has probe metadata; each JSON holds selected_l2, l2_grid, "
                            "train_stats, val_stats, val_metrics (AUROC, PR-AUC, F1), config and provenance, and "
                            "its weights file exists with the recorded sha256.")
def metadata_complete(needle_settings: NeedleSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    from ta_platform.needle.tripwires import metadata_complete as check
    from ta_platform.needle.tripwires import missing_probe
    from ta_platform.studies.needle import metadata_files, stored_slices

    files = metadata_files(needle_settings.dataset_config())
    results = [check(p) for p in files]
    have = {(p.parent.name, int(p.stem.split("_")[2])) for p in files}
    results += [missing_probe(f"{m}/L{layer}") for m, layer in stored_slices(compute.registry()) if (m, layer) not in have]
    return _result(results, len(files), "metadata_files")


@dg.asset_check(asset=needle_token_activations, blocking=True,
                description="No document, haystack group or document text (a copy under a new id) has rows in two "
                            "splits: in the dataset, the token labels or the stored activation index of any model "
                            "and layer.")
def no_document_in_two_splits(needle_settings: NeedleSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    from ta_platform.extraction.store import load_partition
    from ta_platform.needle.tripwires import no_document_in_two_splits as check
    from ta_platform.probing.splits import unit_identity
    from ta_platform.studies.needle import activations_root, labels_file, load_dataset, stored_slices

    config = needle_settings.dataset_config()
    frames = [("dataset", pd.DataFrame([{"doc_id": d.doc_id, "group": d.group, "content_id": unit_identity(d.text),
                                         "split": d.split} for d in load_dataset(config)]))]
    for model_key in sorted(compute.registry()):
        if labels_file(config, model_key).is_file():
            labels = pd.read_parquet(labels_file(config, model_key))
            frames.append((f"labels:{model_key}", labels[[c for c in ("doc_id", "group", "content_id", "split")
                                                          if c in labels]]))
    for model_key, layer in stored_slices(compute.registry()):
        index = load_partition(activations_root() / model_key / f"L{layer}").index
        frames.append((f"activations:{model_key}/L{layer}", index.rename(columns={"trace_key": "doc_id"})))
    result = check(frames)
    return dg.AssetCheckResult(passed=result.passed, metadata={"reason_code": result.reason_code,
                                                               "detail": result.detail[:1000], **result.metrics})


def _per_slice(name: str, check, needle_settings: NeedleSettings, compute: ComputeResource) -> list:
    """``check(frame, X)`` on the seed-0 rows of every stored (model, layer); a slice that cannot even be
    read (stale activations, missing labels) is a failed result naming it, never a crashed check."""
    from ta_platform.extraction.store import load_partition
    from ta_platform.needle.evaluate import seed_slice
    from ta_platform.needle.tripwires import errored
    from ta_platform.studies.needle import activations_root, read_labels, stored_slices

    config = needle_settings.dataset_config()
    results = []
    for model_key, layer in stored_slices(compute.registry()):
        where = f"{model_key}/L{layer}"
        try:
            labels, label_config, _ = read_labels(config, model_key)
            partition = load_partition(activations_root() / model_key / f"L{layer}")
            frame, X = seed_slice(labels, partition, partition.index, 0, label_config)
            results.append(_named(check(frame, X), where))
        except Exception as error:  # a check that crashes must still fail the gate, naming the slice
            results.append(errored(name, f"{where}: {type(error).__name__}: {error}"))
    return results


@dg.asset_check(asset=needle_probes, blocking=True,
                description="Random labels fixed per (document text, token position) are not learnable from train "
                            "to validation (mean validation AUROC within max(4 SE, 0.05) of 0.5): a training document "
                            "copied into validation, renamed or not, makes them so; seed 0 of every (model, layer).")
def permutation_null(needle_settings: NeedleSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    return _slice_tripwire("permutation_null", needle_settings, compute)


@dg.asset_check(asset=needle_probes, blocking=True,
                description="ceil(sqrt(dims)) features, each the needle label plus N(0, 0.1^2), are recovered through "
                            "the same fit/evaluate path (test AUROC >= 0.95); seed 0 of every (model, layer).")
def planted_signal(needle_settings: NeedleSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    return _slice_tripwire("planted_signal", needle_settings, compute)


def _slice_tripwire(name: str, needle_settings: NeedleSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    """The tripwire ``ta_platform.needle.tripwires.<name>`` on seed 0 of every stored (model, layer)."""
    from threadpoolctl import threadpool_limits

    from ta_platform.needle import tripwires

    check = getattr(tripwires, name)
    with threadpool_limits(limits=needle_settings.blas_threads):
        results = _per_slice(name, lambda frame, X: check(frame, X, 0, needle_settings.probe_config()),
                             needle_settings, compute)
    return _result(results, len(results), "slices")


def _named(result, name: str):
    from dataclasses import replace

    return replace(result, detail=f"{name}: {result.detail}")
