"""Checks of the backtracking study (all feed the release gate). Each reads what its asset wrote and
calls a tripwire of ``ta_platform.chains.tripwires``; a failure names the chains, models or seeds."""

import dagster as dg
import pandas as pd

from ta_platform.chains.tripwires import (
    TripwireResult,
    alignment_coverage,
    chains_in_one_split,
    label_prevalence,
    summary_complete,
)
from ta_platform.defs.backtracking.assets import (
    backtracking_chains,
    backtracking_lag_probes,
    backtracking_summary,
    backtracking_token_labels,
    backtracking_tripwires,
)
from ta_platform.defs.backtracking.settings import BacktrackingSettings
from ta_platform.defs.resources import MetadataStoreResource

WARN = dg.AssetCheckSeverity.WARN


def _result(result: TripwireResult, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=result.passed, severity=severity, metadata={
        "reason_code": result.reason_code, "detail": result.detail, "metrics": dg.MetadataValue.json(result.metrics)})


@dg.asset_check(asset=backtracking_chains, blocking=True,
                description="Enough records aligned and their sections cover enough of each chain; faults named.")
def backtracking_alignment_coverage(backtracking_settings: BacktrackingSettings) -> dg.AssetCheckResult:
    from ta_platform.studies import backtracking as bt

    path = bt.backtracking_file(bt.CHAINS_FILE)
    chains = pd.read_parquet(path)
    provenance = bt.read_provenance(path)
    faults = [f"{f['item']}: {f['problem']}" for f in provenance.get("faults", [])]
    return _result(alignment_coverage(int(provenance.get("n_records", 0)), chains["coverage"], faults,
                                      backtracking_settings.lag_config()))


@dg.asset_check(asset=backtracking_token_labels, blocking=True,
                description="Share of backtracking tokens inside the configured band for every tokenizer.")
def backtracking_label_prevalence(backtracking_settings: BacktrackingSettings) -> dg.AssetCheckResult:
    from ta_platform.studies import backtracking as bt

    return _result(label_prevalence(pd.read_parquet(bt.backtracking_file(bt.TOKENS_FILE)),
                                    backtracking_settings.lag_config()))


@dg.asset_check(asset=backtracking_lag_probes, blocking=True,
                description="The seed's one recorded split keeps every problem (and chain text) in one split, "
                            "and every slice used exactly that split.")
def backtracking_chains_in_one_split(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    from ta_platform.studies import backtracking as bt

    chains = pd.read_parquet(bt.backtracking_file(bt.CHAINS_FILE))
    recorded = metadata_store.store().read_table("backtracking_splits")  # empty when never recorded: a failure
    return _result(chains_in_one_split(bt.split_assignments(bt.read_run_records(), recorded, chains)))


def _tripwire(metadata_store: MetadataStoreResource, name: str, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    rows = metadata_store.store().read_table("backtracking_tripwire_results")
    rows = rows[rows["tripwire"] == name] if not rows.empty else rows
    if rows.empty:
        return dg.AssetCheckResult(passed=False, severity=severity, metadata={"detail": f"no {name} results"})
    failed = rows[~rows["passed"].astype(bool)]
    return dg.AssetCheckResult(passed=failed.empty, severity=severity, metadata={
        "n_scopes": len(rows), "failed": [f"{r.scope}: {r.reason_code}: {r.detail}" for r in failed.itertuples()]})


@dg.asset_check(asset=backtracking_tripwires, blocking=True,
                description="Probes trained on labels permuted within chains do no better than chance.")
def backtracking_permutation_null(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    return _tripwire(metadata_store, "permutation_null")


@dg.asset_check(asset=backtracking_tripwires, description="The lag-0 probe beats its permutation null (a finding).")
def backtracking_signal_beats_null(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    return _tripwire(metadata_store, "signal_beats_null", WARN)


@dg.asset_check(asset=backtracking_tripwires, blocking=True,
                description="A planted feature equal to label + noise is recovered through the probe path.")
def backtracking_planted_signal(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    return _tripwire(metadata_store, "planted_signal")


@dg.asset_check(asset=backtracking_summary, blocking=True,
                description="Every scored layer and lag has its margin over the best baseline with an interval "
                            "(a failed or partial summary step turns the gate red).")
def backtracking_summary_complete(metadata_store: MetadataStoreResource) -> dg.AssetCheckResult:
    store = metadata_store.store()
    return _result(summary_complete(store.read_table("backtracking_metric_summary"),
                                    store.read_table("backtracking_margin_summary")))
