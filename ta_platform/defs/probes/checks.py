"""Checks on the probes: one per tripwire (on ``probe_tripwires``) and four on ``probes`` itself.

The probe checks read only seed folders made under the CURRENT probe config (``config_hash``):
results of another config are stale, never mixed in.
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.probes.assets import probe_tripwires, probes, probes_dir, slices
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.shared import activations_root
from ta_platform.store import artifacts

TRIPWIRES = {
    "misaligned_rows": "Each probe row's sentence is the text its activation row was computed from (keys and text "
                       "hashes read independently of the join).",
    "trace_rows_independent": "The rows of one training trace are linearly independent (a linear probe can memorise "
                              "them): fails on rank-collapsed activations and duplicated rows.",
    "permutation_null": "Probes trained on labels permuted within position bins of each problem score at chance.",
    "signal_beats_null": "The real-label probe beats the 95th percentile of a null that keeps position (a finding, "
                         "not a bug detector: WARN severity, listed by the gate but not blocking).",
    "planted_signal": "Planted label+noise features are recovered through the full train/evaluate path.",
    "labels_consistent": "Every stored anchor label equals the label recomputed from the raw chunks_labeled.json "
                         "importances with the label config set now.",
}
# Real activations may carry no anchor signal beyond position (the published pilot's did not); that is a
# result to report, not a pipeline fault, so it must not block a release.
FINDINGS = {"signal_beats_null"}


def _tripwire_check(name: str, description: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=probe_tripwires, name=name, description=description, blocking=name not in FINDINGS)
    def _check(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
        results = metadata_store.store().read_table("tripwire_results", {"tripwire": name})
        if results.empty:
            return dg.AssetCheckResult(passed=False, metadata={"reason_code": "not_evaluated"})
        failed = results[~results["passed"].astype(bool)]
        reasons = sorted(set(failed["reason_code"]))
        return dg.AssetCheckResult(
            passed=failed.empty,
            severity=dg.AssetCheckSeverity.WARN if name in FINDINGS else dg.AssetCheckSeverity.ERROR,
            metadata={
                "reason_code": ",".join(reasons) if reasons else "ok",
                "n_slices": len(results), "n_failed": len(failed),
                "failed_slices": [f"{r.model_key}/{r.layer_key}/{r.setting}: {r.reason_code}: {r.detail[:300]}"
                                  for r in failed.itertuples()][:50],
            },
        )

    return _check


tripwire_checks = [_tripwire_check(name, description) for name, description in TRIPWIRES.items()]


def current_seed_folders(probe_settings: ProbeSettings) -> tuple[dict[int, dict], list[str]]:
    """(seed -> provenance) of seed folders made under the current config, and the stale ones named."""
    from ta_platform.studies.anchor_probes import config_hash

    wanted = config_hash(probe_settings.probe_config())
    current, stale = {}, []
    for path in sorted(probes_dir().glob("seed_*/provenance.json")):
        provenance = json.loads(path.read_text())
        if provenance.get("config_hash") == wanted:
            current[int(provenance["seed"])] = provenance
        else:
            stale.append(f"{path.parent.name} (config {provenance.get('config_hash', 'unrecorded')})")
    return current, stale


def _result(passed: bool, reason: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, metadata={"reason_code": "ok" if passed else reason, **metadata})


@dg.asset_check(asset=probes, blocking=True,
                description="No problem in two splits or folds of the split a seed's probes actually used (read from "
                            "each seed's recorded predictions; a problem is identified by its statement, not its id).")
def split_leakage(probe_settings: ProbeSettings) -> dg.AssetCheckResult:
    from ta_platform.probing.tripwires import split_leakage as leakage
    from ta_platform.studies.anchor_probes import problem_keys, recorded_assignments

    seeds, stale = current_seed_folders(probe_settings)
    if not seeds:
        return _result(False, "no_current_seeds", stale=stale)
    snapshot = pd.read_parquet(artifacts.thought_anchor_file(artifacts.SNAPSHOT), columns=["trace_key", "problem_json"])
    result = leakage(recorded_assignments(probes_dir(), sorted(seeds), problem_keys(snapshot)))
    return _result(result.passed, result.reason_code, detail=result.detail[:2000], seeds=sorted(seeds),
                   **{k: v for k, v in result.metrics.items() if isinstance(v, int)})


@dg.asset_check(asset=probes, blocking=True,
                description="Every seed run under the current config scored every slice (model, layer, setting of "
                            "the stored activations) with every configured probe, with no missing score.")
def every_slice_every_probe(probe_settings: ProbeSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    seeds, stale = current_seed_folders(probe_settings)
    if not seeds:
        return _result(False, "no_current_seeds", stale=stale)
    expected = {(s.model_key, s.layer_key, s.setting) for s in slices(compute)}
    wanted_probes = set(probe_settings.probe_config().probes)
    missing = []
    for seed in sorted(seeds):
        predictions = pd.read_parquet(probes_dir() / f"seed_{seed}" / "predictions.parquet",
                                      columns=["model_key", "layer_key", "setting", "probe", "score"])
        have = predictions.groupby(["model_key", "layer_key", "setting"])["probe"].agg(set).to_dict()
        for scope in sorted(expected):
            lacking = wanted_probes - have.get(scope, set())
            if lacking:
                missing.append(f"seed {seed} {'/'.join(scope)}: {sorted(lacking)}")
        nan = predictions[predictions["score"].isna()]
        if len(nan):
            missing.append(f"seed {seed}: {len(nan)} missing scores ({sorted(set(nan['probe']))})")
    return _result(not missing, "incomplete", missing=missing[:50], seeds=sorted(seeds), n_slices=len(expected))


@dg.asset_check(asset=probes, blocking=True,
                description="Every metric of the current config's seeds is finite (pr_auc, auroc, per probe and slice).")
def metrics_finite(probe_settings: ProbeSettings, metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    from ta_platform.studies.anchor_probes import config_hash

    metrics = metadata_store.store().read_table("probe_metrics",
                                                {"config_hash": config_hash(probe_settings.probe_config())})
    metrics = metrics[metrics["metric"].isin(["pr_auc", "auroc"])]
    if metrics.empty:
        return _result(False, "no_current_metrics")
    bad = metrics[~np.isfinite(metrics["value"].astype(float))]
    return _result(bad.empty, "non_finite", n_metrics=len(metrics), non_finite=[
        f"seed {r.seed} {r.model_key}/{r.layer_key}/{r.setting} {r.probe} {r.metric}" for r in bad.itertuples()][:50])


@dg.asset_check(asset=probes, blocking=True,
                description="Each current seed was trained on the activations stored now (its recorded activation "
                            "fingerprints equal the partitions' manifests) and on the labels stored now (its recorded "
                            "labels provenance equals the labels file's, code version aside); stale seeds are named.")
def provenance_matches_activations(probe_settings: ProbeSettings, compute: ComputeResource) -> dg.AssetCheckResult:
    from ta_platform.common.parquet_io import read_provenance
    from ta_platform.studies.activation_slices import activation_partitions
    from ta_platform.studies.anchor_summary import stale_labels_reason

    seeds, stale = current_seed_folders(probe_settings)
    if not seeds:
        return _result(False, "no_current_seeds", stale=stale)
    registry = compute.registry()
    current = {f"{model}/{layer}": json.loads((folder / "manifest.json").read_text()).get("fingerprint", "")
               for model, layer, folder in activation_partitions(activations_root()) if model in registry}
    differing = [f"seed {seed}: {part} trained on {str(recorded)[:12]}, stored {str(current.get(part))[:12]}"
                 for seed, provenance in sorted(seeds.items())
                 for part, recorded in sorted(provenance["activation_fingerprints"].items())
                 if current.get(part) != recorded]
    differing += [f"seed {seed}: {part} stored but not trained on" for seed, provenance in sorted(seeds.items())
                  for part in sorted(set(current) - set(provenance["activation_fingerprints"]))]
    labels_now = read_provenance(artifacts.thought_anchor_file(artifacts.LABELS))
    stale_labels = [reason for seed, provenance in sorted(seeds.items())
                    if (reason := stale_labels_reason(seed, provenance, labels_now))]
    reasons = ",".join(name for name, found in (("stale_activations", differing), ("stale_labels", stale_labels))
                       if found)
    return _result(not differing and not stale_labels, reasons, differing=differing[:50],
                   stale_labels=stale_labels[:50], seeds=sorted(seeds))
