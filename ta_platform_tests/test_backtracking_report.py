"""Across-seed summaries and the layer x lag report, on lag-probe results of planted data: the SQL
metric summary holds means and counts only; the margin intervals resample chain problems and
recompute the seed-averaged margin (never an average of per-seed endpoints); "beats the baselines"
means every baseline that applies at the lag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ta_platform.chains.intervals import margin_summary
from ta_platform.chains.lag_probes import PROBE, LagConfig
from ta_platform.chains.report import beats_baselines, layer_lag_table
from ta_platform.chains.splits import dataset_split
from ta_platform.probing.metrics import auroc_columns
from ta_platform.probing.unit_bootstrap import SeedRows, seed_averaged_interval
from ta_platform.sql_models import SQL_DIR, load_models
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.studies import backtracking as bt
from ta_platform_tests.test_backtracking_lags import chains_of, token_frame

CONFIG = LagConfig(lags=(0, 4), bootstrap_resamples=200, c_grid=(0.1,))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two seeds of the lag probes (two layers) written as the lag-probes asset writes them, SQL run."""
    storage = tmp_path_factory.mktemp("storage")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TA_STORAGE", str(storage))
        tokens = token_frame(30, 60)
        X = np.random.default_rng(0).normal(size=(len(tokens), 6))
        X[:, 0] += 2.0 * tokens["in_backtracking"].to_numpy()  # a lag-0 signal
        store = MetadataStore(storage / "metadata.duckdb")
        for seed in (0, 1):
            split = dataset_split(chains_of(tokens), seed, CONFIG.fractions)
            result = bt.run_seed(split, iter([bt.Slice("m", layer, tokens, X, "fp") for layer in (3, 12)]), CONFIG,
                                 log=lambda _: None)
            store.replace_slice("backtracking_probe_metrics", bt.metric_table(result.metrics), {"seed": seed})
            store.replace_slice("backtracking_probe_margins", bt.margin_table(result.margins), {"seed": seed})
            bt.write_test_scores(result)
        for model in load_models(SQL_DIR / "backtracking").values():
            store.execute(model.render())
        margins = store.read_table("backtracking_probe_margins")
        summary = bt.margin_summary_table(margins, CONFIG)
        store.replace_slice("backtracking_margin_summary", summary)
        yield storage, store, summary, margins, bt.read_test_scores([0, 1])


def test_metric_summary_is_means_and_counts_without_a_fake_interval(two_seeds):
    _, store, _, _, _ = two_seeds
    summary = store.read_table("backtracking_metric_summary")
    assert not {"ci_low", "ci_high"} & set(summary.columns)  # no mean +- 1.96 SD/sqrt(n) over re-splits
    row = summary[(summary["probe"] == PROBE) & (summary["metric"] == "auroc") & (summary["lag"] == 0)
                  & (summary["layer"] == "L3")].iloc[0]
    raw = store.read_table("backtracking_probe_metrics")
    values = raw[(raw["probe"] == PROBE) & (raw["metric"] == "auroc") & (raw["lag"] == 0) & (raw["layer"] == "L3")]
    assert row["n_seeds"] == 2 and row["mean"] == pytest.approx(values["value"].mean())
    assert row["seed_min"] == values["value"].min() and row["seed_max"] == values["value"].max()


def test_margin_summary_is_the_seed_averaged_margin_with_a_chain_problem_interval(two_seeds):
    _, store, summary, margins, scores = two_seeds
    stored = store.read_table("backtracking_margin_summary")
    assert len(stored) == len(summary) == 2 * (3 + 5) * 2  # layers x (baselines at lag 0, at lag 4) x targets
    assert set(stored["unit"]) == {"chain problem"} and stored["statistic"].str.contains("recomputed").all()
    assert (stored["n_seeds"] == 2).all() and (stored["n_valid_resamples"] > 100).all()
    # the point is the mean over seeds of each seed's own margin (each seed's best baseline for best_baseline)
    per_seed = margins.groupby(["model", "layer", "lag", "target", "baseline"])["margin"].mean()
    for row in stored.itertuples():
        assert row.margin == pytest.approx(per_seed[(row.model, row.layer, row.lag, row.target, row.baseline)])
    # the units resampled are the union of both seeds' test problems
    union = scores[(scores["layer"] == "L3") & (scores["lag"] == 0)]["unit_id"].nunique()
    assert (stored[(stored["layer"] == "L3") & (stored["lag"] == 0)]["n_units"] == union).all()
    assert union > scores[(scores["seed"] == 0) & (scores["layer"] == "L3") & (scores["lag"] == 0)]["unit_id"].nunique()
    # and the interval is exactly the unit bootstrap recomputing the seed-averaged statistic
    cell = scores[(scores["layer"] == "L12") & (scores["lag"] == 4)]
    seeds = [SeedRows(seed, part["span"].to_numpy(), part["unit_id"].to_numpy(),
                      part[[PROBE, "token_identity", "position", "persistence", "lag0_probe"]].to_numpy())
             for seed, part in cell.groupby("seed")]
    def repeated_rows_statistic(labels, scores):  # the plain reference: AUROC of repeated rows, re-sorted per draw
        values = auroc_columns(labels, scores)
        return np.concatenate([values[0] - values[1:], values])

    direct = seed_averaged_interval(seeds, repeated_rows_statistic, n_resamples=CONFIG.bootstrap_resamples, seed=0)
    rows = stored[(stored["layer"] == "L12") & (stored["lag"] == 4) & (stored["target"] == "span")].set_index("baseline")
    for j, name in enumerate(["token_identity", "position", "persistence", "lag0_probe"]):
        assert (rows.loc[name, "ci_low"], rows.loc[name, "ci_high"]) == pytest.approx((direct.low[j], direct.high[j]))


def test_the_interval_is_not_the_mean_of_the_seeds_endpoints(two_seeds):
    """Endpoint averaging is detectable: the seeds test different chains, so the across-seed interval differs
    from the mean of each seed's own chain-problem interval (what the old SQL summary reported)."""
    _, _, summary, margins, scores = two_seeds
    alone = {seed: margin_summary(scores[scores["seed"] == seed], margins[margins["seed"] == seed],
                                  n_resamples=CONFIG.bootstrap_resamples) for seed in (0, 1)}
    key = ["model", "layer", "lag", "target", "baseline"]
    joined = summary.merge(alone[0], on=key, suffixes=("", "_0")).merge(alone[1], on=key, suffixes=("", "_1"))
    assert len(joined) == len(summary)
    averaged_low = (joined["ci_low_0"] + joined["ci_low_1"]) / 2
    averaged_high = (joined["ci_high_0"] + joined["ci_high_1"]) / 2
    difference = np.maximum(np.abs(joined["ci_low"] - averaged_low), np.abs(joined["ci_high"] - averaged_high))
    assert (difference > 1e-3).mean() > 0.9, difference.describe()


def test_report_tables_heatmap_and_cells_beating_the_baselines(two_seeds, monkeypatch):
    storage, store, summary, _, _ = two_seeds
    monkeypatch.setenv("TA_STORAGE", str(storage))
    reports = bt.write_reports(store.read_table("backtracking_metric_summary"), summary)
    report = reports.models["m"]
    assert report.png_path == storage / "reports" / "backtracking_m.png"
    assert report.png_path.read_bytes()[:4] == b"\x89PNG"
    assert "L3 +0" in report.beats_baselines_span  # lag 0: beats token identity and position
    text = reports.markdown_path.read_text()
    assert "k > 0 is the future" in text and "L12" in text
    assert "the resampled unit is the chain problem" in text and "recomputed on every draw" in text
    assert "span_vs_lag0_probe" in report.markdown and "onset_vs_position" in report.markdown


def _table(lag: int, intervals: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """A one-cell layer x lag table from margin-summary rows with the given (ci_low, ci_high) per baseline."""
    metrics = pd.DataFrame([{"model": "m", "layer": "L1", "lag": lag, "probe": PROBE, "metric": "auroc", "mean": 0.8}])
    margins = pd.DataFrame([{"model": "m", "layer": "L1", "lag": lag, "target": "span", "baseline": name,
                             "metric": "auroc", "margin": (low + high) / 2, "ci_low": low, "ci_high": high}
                            for name, (low, high) in intervals.items()])
    return layer_lag_table(metrics, margins, "m")


def test_beating_the_baselines_needs_every_baseline_that_applies_at_the_lag():
    above, spans_zero = (0.02, 0.08), (-0.01, 0.03)
    ahead = {"token_identity": above, "persistence": above, "position": above, "lag0_probe": spans_zero}
    assert beats_baselines(_table(4, ahead)).empty  # the lag-0 probe's score explains it: no claim
    assert beats_baselines(_table(4, {**ahead, "position": spans_zero, "lag0_probe": above})).empty
    assert beats_baselines(_table(4, {**ahead, "lag0_probe": above}))["lag"].tolist() == [4]
    # at lag 0 persistence is the label and the lag-0 probe the probe: token identity and position decide
    assert beats_baselines(_table(0, {"token_identity": above, "position": above}))["lag"].tolist() == [0]
    assert beats_baselines(_table(0, {"token_identity": above, "position": spans_zero})).empty
    assert beats_baselines(_table(4, {"token_identity": above, "persistence": above})).empty  # missing = not beaten
