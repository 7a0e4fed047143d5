"""SQL summaries across seeds and the layer x lag report, on lag-probe results of planted data."""

from __future__ import annotations

import numpy as np

from ta_platform.chains.lag_probes import LagConfig
from ta_platform.sql_models import SQL_DIR, load_models
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.studies import backtracking as bt
from ta_platform_tests.test_backtracking_lags import token_frame


def test_sql_summaries_and_heatmap_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TA_STORAGE", str(tmp_path))
    tokens = token_frame(30, 60)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(tokens), 6))
    X[:, 0] += 2.0 * tokens["in_backtracking"].to_numpy()  # a lag-0 signal
    config = LagConfig(lags=(0, 4), bootstrap_resamples=50, c_grid=(0.1,))
    store = MetadataStore(tmp_path / "metadata.duckdb")
    for seed in (0, 1):
        slices = iter([bt.Slice("m", layer, tokens, X, "fp") for layer in (3, 12)])
        metrics, margins, provenance = bt.run_seed(seed, slices, config, log=lambda _: None)
        store.replace_slice("backtracking_probe_metrics", bt.metric_table(metrics), {"seed": seed})
        store.replace_slice("backtracking_probe_margins", bt.margin_table(margins), {"seed": seed})
    for model in load_models(SQL_DIR / "backtracking").values():
        store.execute(model.render())
    summary = store.read_table("backtracking_metric_summary")
    row = summary[(summary["probe"] == "linear_probe") & (summary["metric"] == "auroc") & (summary["lag"] == 0)
                  & (summary["layer"] == "L3")].iloc[0]
    raw = store.read_table("backtracking_probe_metrics")
    values = raw[(raw["probe"] == "linear_probe") & (raw["metric"] == "auroc") & (raw["lag"] == 0) & (raw["layer"] == "L3")]
    assert row["n_seeds"] == 2 and row["mean"] == values["value"].mean()
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    reports = bt.write_reports(summary, store.read_table("backtracking_margin_summary"))
    report = reports.models["m"]
    assert report.png_path == tmp_path / "reports" / "backtracking_m.png"
    assert report.png_path.read_bytes()[:4] == b"\x89PNG"
    assert "L3 +0" in report.beats_both_span  # lag 0: beats token identity (persistence is not a baseline there)
    text = reports.markdown_path.read_text()
    assert "k > 0 is the future" in text and "L12" in text
