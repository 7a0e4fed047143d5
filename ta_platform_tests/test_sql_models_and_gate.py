"""SQL models (dependencies read from files, run on DuckDB) and the release-gate verdict."""

from __future__ import annotations

import pandas as pd
import pytest

from ta_platform.common.release_gate import CheckEvaluation, evaluate_gate
from ta_platform.sql_models import load_models, topological_order
from ta_platform.store.metadata_store import MetadataStore


def test_project_models_parse_and_their_refs_form_a_dag():
    models = load_models()
    assert {"probe_metric_summary", "probe_margin_summary", "tripwire_summary", "extraction_failure_summary",
            "scaling_report_rows"} <= set(models)
    order = topological_order(models)
    assert order.index("probe_metric_summary") < order.index("scaling_report_rows")
    assert set(models["scaling_report_rows"].refs) == {"probe_metric_summary", "probe_margin_summary"}
    assert "tripwire_results" in models["scaling_report_rows"].sources


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
    for seed in range(3):
        for probe, value in [("position_baseline", 0.20), ("linear_probe", 0.40 + 0.01 * seed), ("mlp_probe", 0.35)]:
            rows.append(dict(seed=seed, model_key="m", layer_key="L2", setting="correct", probe=probe,
                             metric="pr_auc", value=value))
    store.replace_slice("probe_metrics", pd.DataFrame(rows))
    margins = [dict(seed=s, model_key="m", layer_key="L2", setting="correct", probe="linear_probe", metric="pr_auc",
                    margin=0.2, ci_low=0.1, ci_high=0.3, n_valid_resamples=1000) for s in range(3)]
    store.replace_slice("probe_margins", pd.DataFrame(margins))
    store.replace_slice("tripwire_results", pd.DataFrame([
        dict(tripwire="memorisation", model_key="m", layer_key="L2", setting="correct", passed=True, reason_code="ok",
             detail="", metrics="{}"),
        dict(tripwire="planted_signal", model_key="m", layer_key="L2", setting="correct", passed=False,
             reason_code="planted_signal_not_recovered", detail="", metrics="{}"),
    ]))


def test_report_rows_join_summary_margins_and_failing_tripwires(tmp_path):
    store = MetadataStore(tmp_path / "m.duckdb")
    _probe_tables(store)
    models = load_models()
    for name in topological_order(models):
        if name != "extraction_failure_summary":
            store.execute(models[name].render())
    rows = store.read_table("scaling_report_rows")
    assert len(rows) == 3
    linear = rows[rows["probe"] == "linear_probe"].iloc[0]
    assert linear["mean"] == pytest.approx(0.41)
    assert linear["margin"] == pytest.approx(0.2) and linear["ci_low"] == pytest.approx(0.1)
    assert linear["tripwire_status"] == "FAIL: planted_signal:planted_signal_not_recovered"
    assert rows[rows["probe"] == "mlp_probe"]["margin"].isna().all()
    summary = store.read_table("probe_metric_summary")
    linear = summary[summary["probe"] == "linear_probe"].iloc[0]
    assert linear["n_seeds"] == 3 and linear["std"] == pytest.approx(0.01)


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
