"""SQL models (dependencies read from files, run on DuckDB) and the release-gate verdict."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from ta_platform.common.release_gate import CheckEvaluation, evaluate_gate
from ta_platform.sql_models import load_models, topological_order
from ta_platform.store.metadata_store import MetadataStore


def test_project_models_parse_and_their_refs_form_a_dag():
    models = load_models()
    assert {"probe_metric_summary", "tripwire_summary", "extraction_failure_summary", "cell_tripwire_status"} <= set(
        models)
    order = topological_order(models)
    assert set(order) == set(models)
    assert "tripwire_results" in models["cell_tripwire_status"].sources
    # the averaged-endpoints model is gone: intervals come from a bootstrap over problems (probing/selection.py)
    assert "probe_margin_summary" not in models


def test_no_sql_model_makes_an_interval_from_seeds_or_endpoints():
    """Intervals resample the sampled unit and recompute the statistic (probing/unit_bootstrap.py, in Python);
    no model in any study folder averages per-seed interval endpoints (the old backtracking margin summary:
    avg(ci_low)) or builds mean +- z SD/sqrt(n) over re-splits (the old backtracking metric summary)."""
    import re

    from ta_platform.sql_models import SQL_DIR

    folders = [SQL_DIR, *sorted(path for path in SQL_DIR.iterdir() if path.is_dir())]
    models = {name: model for folder in folders for name, model in load_models(folder).items()}
    assert "backtracking_metric_summary" in models and "backtracking_margin_summary" not in models
    for name, model in models.items():
        sql = re.sub(r"--[^\n]*", "", model.sql).lower()  # comments may name what is not done
        assert not re.search(r"avg\([^)]*(ci_low|ci_high|_low|_high)", sql), f"{name} averages interval endpoints"
        assert not re.search(r"1\.96|sqrt\(count", sql), f"{name} builds a normal interval over seeds"


def test_a_new_model_needs_only_a_file_and_cycles_and_unknown_refs_are_named(tmp_path):
    (tmp_path / "a.sql").write_text("-- base\nSELECT 1 AS x")
    (tmp_path / "b.sql").write_text("SELECT x + 1 AS y FROM {{ ref('a') }}")
    models = load_models(tmp_path)
    assert topological_order(models) == ["a", "b"]
    assert models["b"].render() == 'CREATE OR REPLACE TABLE "b" AS\nSELECT x + 1 AS y FROM "a"'
    (tmp_path / "a.sql").write_text("SELECT y FROM {{ ref('b') }}")
    with pytest.raises(ValueError, match="cycle"):
        load_models(tmp_path)
    (tmp_path / "a.sql").write_text("SELECT * FROM {{ ref('nope') }}")
    with pytest.raises(ValueError, match=r"a.sql: ref to unknown model\(s\) \['nope'\]"):
        load_models(tmp_path)


def _probe_tables(store: MetadataStore) -> None:
    rows = []
    for config, seeds in (("new", range(3)), ("old", range(1))):
        for seed in seeds:
            for probe, value in [("position_baseline", 0.20), ("linear_probe", 0.40 + 0.01 * seed)]:
                rows.append(dict(seed=seed, model_key="m", layer_key="L2", setting="correct", probe=probe,
                                 metric="pr_auc", value=value if config == "new" else 0.9, config_hash=config))
    store.replace_slice("probe_metrics", pd.DataFrame(rows))
    store.replace_slice("tripwire_results", pd.DataFrame([
        dict(tripwire="trace_rows_independent", model_key="m", layer_key="L2", setting="correct", passed=True,
             reason_code="ok", detail="", metrics="{}"),
        dict(tripwire="planted_signal", model_key="m", layer_key="L3", setting="correct", passed=False,
             reason_code="planted_signal_not_recovered", detail="", metrics="{}"),
        dict(tripwire="signal_beats_null", model_key="m", layer_key="L2", setting="correct", passed=False,
             reason_code="no_signal_beyond_position", detail="", metrics="{}"),
        dict(tripwire="labels_consistent", model_key="all", layer_key="all", setting="all", passed=True,
             reason_code="ok", detail="", metrics="{}"),
        dict(tripwire="trace_rows_independent", model_key="m", layer_key="L2", setting="incorrect", passed=True,
             reason_code="ok", detail="", metrics="{}"),
    ]))


def _build(store: MetadataStore) -> None:
    models = load_models()
    for name in topological_order(models):
        if name in ("probe_metric_summary", "cell_tripwire_status"):
            store.execute(models[name].render())


def test_metric_summary_keeps_configs_apart_and_gives_no_spread_for_one_seed(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb")
    _probe_tables(store)
    _build(store)
    summary = store.read_table("probe_metric_summary")
    new = summary[(summary["config_hash"] == "new") & (summary["probe"] == "linear_probe")].iloc[0]
    assert new["mean"] == pytest.approx(0.41) and new["n_seeds"] == 3 and new["std"] == pytest.approx(0.01)
    assert new["seeds"] == "0,1,2"  # the old config's 0.9 is not averaged in
    old = summary[(summary["config_hash"] == "old") & (summary["probe"] == "linear_probe")].iloc[0]
    assert old["n_seeds"] == 1 and pd.isna(old["std"])  # never a fake 0 from one seed


def test_cell_status_collects_every_layer_and_the_dataset_rows_but_lists_findings_apart(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb")
    _probe_tables(store)
    _build(store)
    status = store.read_table("cell_tripwire_status").set_index("setting")
    assert status.loc["correct", "tripwire_status"] == "FAIL: planted_signal:planted_signal_not_recovered"
    assert status.loc["correct", "findings"] == "signal_beats_null:no_signal_beyond_position"
    assert status.loc["incorrect", "tripwire_status"] == "pass"


def test_gate_fails_on_error_checks_and_missing_evaluations_but_not_warnings():
    verdict = evaluate_gate([
        CheckEvaluation("a:ok", "passed"),
        CheckEvaluation("a:warn", "failed", severity="WARN"),
        CheckEvaluation("b:bad", "failed", reason="problem_leak"),
        CheckEvaluation("c:never", "missing"),
    ])
    assert not verdict.passed
    assert verdict.failing == ["b:bad (problem_leak)"]
    assert verdict.missing == ["c:never [missing]"]
    assert verdict.warnings == ["a:warn"]
    assert evaluate_gate([CheckEvaluation("a:ok", "passed"), CheckEvaluation("a:w", "failed", "WARN")]).passed


def test_an_evaluation_counts_only_for_the_assets_latest_materialisation(tmp_path):
    """A check evaluated on an older materialisation of its asset is stale, and stale fails the gate."""
    from ta_platform.defs.gate.instance_reader import latest_evaluations

    @dg.asset
    def table() -> None:
        return None

    @dg.asset_check(asset=table)
    def rows_ok() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True, metadata={"reason_code": "ok"})

    @dg.asset_check(asset=table)
    def rows_bad() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, metadata={"reason_code": "broken", "detail": "row 3 is wrong"})

    keys = [rows_ok.check_key, rows_bad.check_key]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert [e.status for e in latest_evaluations(instance, keys)] == ["missing", "missing"]
        dg.materialize([table, rows_ok, rows_bad], instance=instance, raise_on_error=False)
        first = {e.check: e for e in latest_evaluations(instance, keys)}
        assert first["table:rows_ok"].status == "passed"
        assert first["table:rows_bad"].status == "failed" and first["table:rows_bad"].reason == "broken: row 3 is wrong"
        # the asset again, its checks left out: the old evaluations describe data that is gone
        dg.materialize([table, rows_ok, rows_bad], instance=instance,
                       selection=dg.AssetSelection.assets(table) - dg.AssetSelection.checks_for_assets(table))
        again = {e.check: e for e in latest_evaluations(instance, keys)}
        assert again["table:rows_ok"].status == "stale" and "latest materialisation is run" in again["table:rows_ok"].reason
        verdict = evaluate_gate(list(again.values()))
        assert not verdict.passed and any("table:rows_ok" in item for item in verdict.missing)
