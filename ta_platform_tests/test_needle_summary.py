"""The needle summary's across-seed intervals: problem groups resampled, the seed-averaged AUROC recomputed."""

import numpy as np
import pandas as pd
import pytest

from ta_platform.needle.summary import SeedPredictions, markdown_table, summarise
from ta_platform.probing.bootstrap import bootstrap_intervals
from ta_platform.probing.metrics import auroc, auroc_columns
from ta_platform.probing.unit_bootstrap import SeedRows, seed_averaged_interval


def _seed(seed: int, groups: list[str], rng: np.random.Generator) -> SeedPredictions:
    """Token rows of ``groups`` (4 documents of 25 tokens each, half with a 5-token needle); a probe that sees
    the needle through noise whose size differs by group, token identity much weaker, position none."""
    rows = []
    for g in groups:
        strength = rng.uniform(0.5, 2.5)
        for d in range(4):
            has = d % 2 == 0
            for p in range(25):
                needle = has and 10 <= p < 15
                rows.append({"doc_id": f"{g}-d{d}", "group": g, "position": p, "has_needle": has, "is_needle": needle,
                             "linear_probe": strength * needle + rng.normal(),
                             "token_identity": 0.3 * needle + rng.normal()})
    tokens = pd.DataFrame(rows).assign(position=rng.normal(size=len(rows)))  # the position probe's scores
    docs = tokens.groupby("doc_id").agg(group=("group", "first"), has_needle=("has_needle", "first"),
                                        doc_monitor_max=("linear_probe", "max"),
                                        doc_monitor_max_token_identity=("token_identity", "max")).reset_index()
    return SeedPredictions(seed, tokens, docs)


def _metrics(seeds: list[SeedPredictions]) -> pd.DataFrame:
    """needle_probe_metrics rows as the probes stage writes them, each seed with its own group-bootstrap interval."""
    rows = []
    for s in seeds:
        for frame, label, names in ((s.tokens, "is_needle", ("linear_probe", "token_identity", "position")),
                                    (s.documents, "has_needle", ("doc_monitor_max", "doc_monitor_max_token_identity"))):
            y = frame[label].to_numpy(bool)
            for interval in bootstrap_intervals(y, {n: frame[n].to_numpy() for n in names},
                                                frame["group"].to_numpy(), ("auroc",), 300, s.seed):
                rows += [{"model": "m", "layer": 3, "seed": s.seed, "probe": interval.probe, "split": "test",
                          "metric": metric, "value": value}
                         for metric, value in (("auroc", auroc(y, frame[interval.probe].to_numpy())),
                                               ("auroc_ci_low", interval.ci_low), ("auroc_ci_high", interval.ci_high))]
    return pd.DataFrame(rows)


def test_summary_interval_is_the_unit_bootstrap_of_the_seed_mean_not_averaged_endpoints():
    """Two seeds scored on different test groups (as re-splits are): the reported interval resamples the union of
    groups and recomputes the seed-averaged AUROC; averaging each seed's endpoints (the old summary) is wider."""
    rng = np.random.default_rng(0)
    seeds = [_seed(0, [f"g{i}" for i in range(6)], rng), _seed(1, [f"g{i}" for i in range(6, 12)], rng)]
    metrics = _metrics(seeds)
    summary = summarise(metrics, {("m", 3): seeds}, n_resamples=400, seed=0).set_index(["probe", "split", "metric"])
    row = summary.loc[("linear_probe", "test", "auroc")]
    direct = seed_averaged_interval([SeedRows(s.seed, s.tokens["is_needle"].to_numpy(), s.tokens["group"].to_numpy(),
                                              s.tokens[["linear_probe", "token_identity", "position"]].to_numpy())
                                     for s in seeds], auroc_columns, n_resamples=400, seed=0)
    assert row["mean"] == pytest.approx(direct.point[0])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((direct.low[0], direct.high[0]))
    probe = metrics[metrics["probe"] == "linear_probe"].pivot_table(index="seed", columns="metric", values="value")
    averaged_width = probe["auroc_ci_high"].mean() - probe["auroc_ci_low"].mean()
    assert row["ci_high"] - row["ci_low"] < 0.85 * averaged_width  # twelve groups behind the mean, not six
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_margins_are_resampled_on_the_same_draw():
    rng = np.random.default_rng(1)
    seeds = [_seed(s, [f"g{i}" for i in range(8)], rng) for s in range(2)]
    summary = summarise(_metrics(seeds), {("m", 3): seeds}, n_resamples=300).set_index(["probe", "split", "metric"])
    margin = summary.loc[("linear_probe-token_identity", "test", "auroc")]
    probe, baseline = (summary.loc[(p, "test", "auroc")] for p in ("linear_probe", "token_identity"))
    assert margin["mean"] == pytest.approx(probe["mean"] - baseline["mean"])
    assert margin["ci_low"] > 0  # the probe beats token identity on every draw's groups
    assert margin["seed_min"] <= margin["mean"] <= margin["seed_max"]
    doc_margin = summary.loc[("doc_monitor_max-doc_monitor_max_token_identity", "test", "auroc")]
    assert np.isfinite(doc_margin["ci_low"]) and np.isfinite(doc_margin["ci_high"])
    table = markdown_table(summary.reset_index())
    assert "linear_probe-token_identity" in table and "doc_monitor_max_token_identity" in table


def test_without_predictions_the_interval_is_missing_not_made_up():
    rng = np.random.default_rng(2)
    seeds = [_seed(0, ["a", "b", "c"], rng)]
    summary = summarise(_metrics(seeds)).set_index(["probe", "split", "metric"])
    assert np.isnan(summary.loc[("linear_probe", "test", "auroc"), "ci_low"])
