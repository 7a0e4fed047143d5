"""Numbers Dagster can plot: a summary asset's headline floats, read back from the instance as a series.

The smallest study (backtracking, tiny models, embedded default data) runs through the real CLI in a
private storage, then its summary stage runs again: the instance holds two materialisations of
``backtracking_summary`` whose FLOAT metadata share the same keys (what the UI's Plots tab draws).
The same runs show what the terminal gets: a short log, no Dagster DEBUG event, the headline table.
"""

import dagster as dg
import pandas as pd
import pytest

from ta_platform.defs.resources import MetadataStoreResource
from ta_platform.defs.summary_metadata import RecordingMetadataStore
from ta_platform.store.tables import TABLES, TableSchema
from ta_platform_tests.e2e import project_env, run_cli

SUMMARY = dg.AssetKey("backtracking_summary")
EXPECTED = ("tiny-llama/L2/lag+0/probe_auroc", "tiny-llama/L2/lag+8/probe_auroc",
            "tiny-llama/L2/lag+8/margin_best_baseline", "tiny-llama/L2/lag+0/margin_token_identity",
            "headline_value")


@pytest.fixture(scope="module")
def two_summaries(tmp_path_factory):
    storage = tmp_path_factory.mktemp("plots")
    env = project_env(storage, TA_MODEL_PROFILE="tiny", OMP_NUM_THREADS="1", TA_PROGRESS_SECONDS="15")
    first = run_cli(["ta-platform", "materialize", "--study", "backtracking"], env, timeout=1500)
    again = run_cli(["ta-platform", "materialize", "--study", "backtracking", "--stage", "backtracking-summary"],
                    env, timeout=900)
    return storage, first, again


def test_the_summary_records_the_same_float_keys_every_time(two_summaries):
    storage, first, again = two_summaries
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(storage / "dagster_home")) as instance:
        records = instance.fetch_materializations(SUMMARY, limit=10).records
        assert len(records) == 2
        series = [{key: value for key, value in r.asset_materialization.metadata.items()
                   if isinstance(value, dg.FloatMetadataValue)} for r in records]
    assert set(series[0]) == set(series[1])  # stable keys: one line per key in the Plots tab
    assert set(EXPECTED) <= set(series[0]), sorted(series[0])
    for values in series:
        assert all(0.0 <= values[k].value <= 1.0 for k in series[0] if k.endswith("probe_auroc"))
    low, high = series[0]["headline_low"].value, series[0]["headline_high"].value
    assert low <= series[0]["headline_value"].value <= high


def test_the_terminal_gets_a_short_log_and_the_headline_table(two_summaries):
    storage, first, _ = two_summaries
    lines = first.stdout.splitlines()
    assert len(lines) <= 40, first.stdout
    assert not any(" - DEBUG - " in line or "STEP_START" in line for line in lines + first.stderr.splitlines())
    assert any(line.startswith("[backtracking-probes] run ") and " succeeded in " in line for line in lines), first.stdout
    table = [line for line in lines if line.startswith("backtracking ")]
    assert len(table) == 1 and "span AUROC margin over the best baseline" in table[0] and "PASS" in table[0], lines
    logs = list((storage / "logs").glob("materialize-*.log"))
    assert logs and any("STEP_START" in log.read_text() for log in logs)  # the event stream is in the file


TOY_TABLES = {
    "toy_index": TableSchema("toy_index", (("trace_key", "VARCHAR"), ("n_chunks", "BIGINT"))),
    "toy_metrics": TableSchema("toy_metrics", (("seed", "BIGINT"), ("value", "DOUBLE"))),
    "faults": TABLES["faults"],
}
DB: dict[str, str] = {}


def _store() -> RecordingMetadataStore:
    return RecordingMetadataStore(DB["path"], tables=TOY_TABLES)


@dg.asset
def toy_index() -> None:
    """Writes its own table and a side table: its metadata describes its own."""
    store = _store()
    store.replace_slice("toy_index", pd.DataFrame({"trace_key": ["a", "b", "c"], "n_chunks": [1, 2, 3]}))
    store.replace_slice("faults", pd.DataFrame({"stage": ["x"], "item": ["y"], "path": [""], "kind": [""],
                                                "problem": [""]}), {"stage": "x"})


@dg.asset
def toy_probes() -> dg.MaterializeResult:
    """Named unlike its table: the table it writes is its table."""
    _store().replace_slice("toy_metrics", pd.DataFrame({"seed": [0, 0], "value": [0.5, 0.25]}))
    return dg.MaterializeResult(metadata={"n": 2})


def test_every_table_an_asset_writes_carries_its_row_count_and_columns(tmp_path):
    DB["path"] = str(tmp_path / "metadata.duckdb")
    assert isinstance(MetadataStoreResource(db_path=DB["path"]).store(), RecordingMetadataStore)  # what assets get
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([toy_index, toy_probes], instance=instance).success
        own = instance.get_latest_materialization_event(dg.AssetKey("toy_index")).asset_materialization.metadata
        other = instance.get_latest_materialization_event(dg.AssetKey("toy_probes")).asset_materialization.metadata
    assert own["dagster/row_count"].value == 3  # its own table, not the one-row side table
    assert [c.name for c in own["dagster/column_schema"].schema.columns] == ["trace_key", "n_chunks"]
    assert other["dagster/row_count"].value == 2 and other["n"].value == 2
    assert [c.name for c in other["dagster/column_schema"].schema.columns] == ["seed", "value"]


def test_the_needle_headline_is_the_best_margin_with_its_own_interval():
    """The headline's interval is the margin's (problem groups resampled, margin recomputed per draw), not the
    probe's AUROC interval shifted by token identity's point."""
    from ta_platform.defs.study_headlines import needle

    rows = [("m", 7, "linear_probe", 0.99, 0.98, 0.995), ("m", 7, "token_identity", 0.89, 0.86, 0.92),
            ("m", 7, "linear_probe-token_identity", 0.10, 0.07, 0.13),
            ("m", 15, "linear_probe", 0.97, 0.96, 0.98), ("m", 15, "token_identity", 0.92, 0.90, 0.94),
            ("m", 15, "linear_probe-token_identity", 0.05, 0.01, 0.08)]
    summary = pd.DataFrame([{"model": m, "layer": layer, "probe": p, "split": "test", "metric": "auroc", "mean": v,
                             "ci_low": lo, "ci_high": hi} for m, layer, p, v, lo, hi in rows])
    meta = needle(summary)
    assert meta["headline_cell"].value == "m/L7"
    assert (meta["headline_value"].value, meta["headline_low"].value, meta["headline_high"].value) == (0.10, 0.07, 0.13)
    assert meta["m/L15/margin_token_identity"].value == 0.05
    assert meta["m/L7/linear_probe_auroc"].value == 0.99 and meta["m/L15/token_identity_auroc"].value == 0.92


@pytest.mark.fault
def test_a_failed_summary_step_turns_the_gate_red_until_a_rerun_succeeds(two_summaries):
    """Planted fault: a directory where the summary's markdown report goes, so the step fails after its table is
    written. Its planned check (backtracking_summary_complete) has no evaluation: the gate names it and fails;
    with the obstacle gone, a rerun of the stage passes the gate. (Runs last: it re-materialises the summary.)"""
    storage, _, _ = two_summaries
    env = project_env(storage, TA_MODEL_PROFILE="tiny", OMP_NUM_THREADS="1")
    obstacle = storage / "reports" / "backtracking_summary.md"
    obstacle.unlink()
    obstacle.mkdir()
    try:
        failed = run_cli(["ta-platform", "materialize", "--study", "backtracking", "--stage", "backtracking-summary"],
                         env, timeout=900)
        assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
        gate = run_cli(["ta-platform", "gate", "--study", "backtracking"], env)
        assert gate.returncode == 1 and "backtracking_summary_complete" in gate.stdout + gate.stderr, gate.stdout
    finally:
        obstacle.rmdir()
    rerun = run_cli(["ta-platform", "materialize", "--study", "backtracking", "--stage", "backtracking-summary"],
                    env, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert run_cli(["ta-platform", "gate", "--study", "backtracking"], env).returncode == 0
