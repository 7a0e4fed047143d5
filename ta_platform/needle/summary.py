"""The study's summary: per model, test AUROC by layer, each with an across-seed interval from unit resampling.

What the interval is (every reported test AUROC and every margin): the point is the mean over seeds
of the seed's test AUROC; each of ``n_resamples`` bootstrap draws resamples the PROBLEM GROUPS of
the test documents with replacement (the union over seeds; the dataset splits by group and
documents of one problem share most of their text), every seed recomputes its AUROC -- or its
margin over a baseline -- on its rows of the drawn groups, and the draw's value is the mean over
seeds (``probing.unit_bootstrap.seed_averaged_interval``). Never an average of per-seed interval
endpoints: that would ignore that every seed scores the same few test groups. The seed min-max
beside it says how much the sampled negatives and balance draws alone move the number.

Margins (probe minus baseline on the same draw, so the interval is about the difference): the
linear probe over token identity and over position, and each document monitor over the same
monitor built on the token-identity probe's scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ta_platform.probing.rank_auroc import auroc_of_ranks, dense_ranks
from ta_platform.probing.unit_bootstrap import SeedRows, seed_averaged_interval

SUMMARY_COLUMNS = ["model", "layer", "probe", "split", "metric", "mean", "seed_min", "seed_max", "n_seeds", "ci_low",
                   "ci_high"]
TOKEN_PROBES = ("linear_probe", "token_identity", "position")
MONITORS = ("doc_monitor_max", "doc_monitor_topk", "doc_monitor_max_token_identity", "doc_monitor_topk_token_identity")
REPORTED_PROBES = ("linear_probe", "token_identity", "position", "doc_monitor_max", "doc_monitor_max_token_identity")
MARGINS = (("linear_probe", "token_identity"), ("linear_probe", "position"),
           ("doc_monitor_max", "doc_monitor_max_token_identity"), ("doc_monitor_topk", "doc_monitor_topk_token_identity"))
INTERVAL_UNIT = "problem group"
INTERVAL_NOTE = ("mean over seeds [95% interval: test problem groups resampled with replacement, each seed's AUROC "
                 "(or margin) recomputed on its rows of the drawn groups and averaged over seeds] (seed min-max)")


def margin_name(probe: str, baseline: str) -> str:
    return f"{probe}-{baseline}"


@dataclass(frozen=True)
class SeedPredictions:
    """One seed's test predictions of one (model, layer): token rows and document rows (``needle.evaluate``)."""

    seed: int
    tokens: pd.DataFrame  # group, is_needle and one score column per token probe
    documents: pd.DataFrame  # group, has_needle and one score column per monitor


def _auroc_and_margins(names: Sequence[str]):
    """statistic(labels, ranks) -> [AUROC of every column, then each margin of ``MARGINS`` among ``names``]."""
    pairs = [(names.index(a), names.index(b)) for a, b in MARGINS if a in names and b in names]

    def statistic(labels: np.ndarray, ranks: np.ndarray, weights: np.ndarray) -> np.ndarray:
        values = auroc_of_ranks(labels, ranks, weights)
        return np.concatenate([values, [values[a] - values[b] for a, b in pairs]])

    return statistic, list(names) + [margin_name(names[a], names[b]) for a, b in pairs]


def unit_intervals(seeds: Sequence[SeedPredictions], n_resamples: int = 1000, seed: int = 0
                   ) -> dict[str, tuple[float, float, float, int]]:
    """name (probe, monitor or margin) -> (point, ci_low, ci_high, n_units) of the seed-averaged test AUROC."""
    out: dict[str, tuple[float, float, float, int]] = {}
    for level, label, candidates in (("tokens", "is_needle", TOKEN_PROBES), ("documents", "has_needle", MONITORS)):
        frames = [getattr(s, level) for s in seeds]
        names = [n for n in candidates if all(n in f for f in frames)]
        if not names:
            continue
        statistic, reported = _auroc_and_margins(names)
        rows = [SeedRows(s.seed, f[label].to_numpy(bool), f["group"].astype(str).to_numpy(),
                         dense_ranks(f[names].to_numpy(np.float64))) for s, f in zip(seeds, frames, strict=True)]
        interval = seed_averaged_interval(rows, statistic, n_resamples=n_resamples, seed=seed, unit=INTERVAL_UNIT,
                                          statistic_name=f"seed-averaged test AUROC ({level})", weighted=True)
        for i, name in enumerate(reported):
            out[name] = (float(interval.point[i]), float(interval.low[i]), float(interval.high[i]), interval.n_units)
    return out


def summarise(metrics: pd.DataFrame, predictions: Mapping[tuple[str, int], Sequence[SeedPredictions]] | None = None,
              n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """``needle_probe_metrics`` rows -> one row per (model, layer, probe, split) for auroc, pr_auc, f1 and the
    top-token rate: mean over seeds and the seed range; for test AUROC (and the margins, one row each with
    ``probe = "<probe>-<baseline>"``) the across-seed interval from ``predictions`` ((model, layer) -> the
    seeds' test predictions), resampling problem groups. No predictions: NaN interval (never a fake one)."""
    if metrics.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    wide = metrics.pivot_table(index=["model", "layer", "probe", "split", "seed"], columns="metric", values="value",
                               aggfunc="first").reset_index()
    intervals = {key: unit_intervals(list(seeds), n_resamples, seed) for key, seeds in (predictions or {}).items()}
    rows = []
    for (model, layer, probe, split), group in wide.groupby(["model", "layer", "probe", "split"], sort=True):
        for metric in ("auroc", "pr_auc", "f1", "top_token_in_needle_rate"):
            if metric not in group or group[metric].isna().all():
                continue
            values = group[metric].to_numpy(dtype=np.float64)
            low = high = np.nan
            if metric == "auroc" and split == "test":
                _, low, high, _ = intervals.get((model, int(layer)), {}).get(probe, (np.nan,) * 4)
            rows.append(_row(model, layer, probe, split, metric, values, low, high))
    test_auc = wide[wide["split"] == "test"].pivot_table(index=["model", "layer", "seed"], columns="probe",
                                                         values="auroc") if "auroc" in wide else pd.DataFrame()
    for (model, layer), by_seed in test_auc.groupby(level=["model", "layer"], sort=True):
        for probe, baseline in MARGINS:
            if probe in by_seed and baseline in by_seed:
                name = margin_name(probe, baseline)
                _, low, high, _ = intervals.get((model, int(layer)), {}).get(name, (np.nan,) * 4)
                values = (by_seed[probe] - by_seed[baseline]).to_numpy(np.float64)
                rows.append(_row(model, layer, name, "test", "auroc", values, low, high))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _row(model, layer, probe, split, metric, values: np.ndarray, low: float, high: float) -> dict:
    finite = values[np.isfinite(values)]
    return {"model": model, "layer": int(layer), "probe": probe, "split": split, "metric": metric,
            "mean": float(finite.mean()) if finite.size else np.nan,
            "seed_min": float(finite.min()) if finite.size else np.nan,
            "seed_max": float(finite.max()) if finite.size else np.nan, "n_seeds": int(finite.size),
            "ci_low": float(low), "ci_high": float(high)}


def markdown_table(summary: pd.DataFrame, split: str = "test") -> str:
    """One line per model x layer: test AUROC of each probe, monitor and margin as
    ``mean [unit interval] (seeds min-max)`` (``INTERVAL_NOTE``)."""
    auc = summary[(summary["metric"] == "auroc") & (summary["split"] == split)]
    wanted = [*REPORTED_PROBES[:3], margin_name("linear_probe", "token_identity"), *REPORTED_PROBES[3:],
              margin_name("doc_monitor_max", "doc_monitor_max_token_identity")]
    probes = [p for p in wanted if p in set(auc["probe"])]
    lines = ["| model | layer | " + " | ".join(probes) + " |", "|---|---|" + "---|" * len(probes)]
    for (model, layer), group in auc.groupby(["model", "layer"], sort=True):
        cells = []
        for probe in probes:
            row = group[group["probe"] == probe]
            if row.empty:
                cells.append("")
                continue
            r = row.iloc[0]
            cells.append(f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (seeds {r['seed_min']:.3f}-"
                         f"{r['seed_max']:.3f}, n={int(r['n_seeds'])})")
        lines.append(f"| {model} | L{layer} | " + " | ".join(cells) + " |")
    rate = summary[(summary["metric"] == "top_token_in_needle_rate") & (summary["probe"] == "doc_monitor_max")]
    if len(rate):
        lines += ["", "Top-scoring token inside the needle (test documents with a needle): "
                  + ", ".join(f"{r.model}/L{r.layer} {r.mean:.2f}" for r in rate.itertuples())]
    return "\n".join(lines)


def summary_png(summary: pd.DataFrame) -> bytes:
    """Test AUROC by layer per model (one panel per model), error bars = the unit-resampled across-seed interval."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    auc = summary[(summary["metric"] == "auroc") & (summary["split"] == "test")]
    models = sorted(auc["model"].unique())
    figure = Figure(figsize=(4.2 * max(len(models), 1), 3.4))
    FigureCanvasAgg(figure)
    for i, model in enumerate(models, start=1):
        axis = figure.add_subplot(1, max(len(models), 1), i)
        part = auc[auc["model"] == model]
        for probe in REPORTED_PROBES:
            rows = part[part["probe"] == probe].sort_values("layer")
            if rows.empty:
                continue
            err = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]])
            axis.errorbar(rows["layer"], rows["mean"], yerr=np.nan_to_num(err).clip(min=0), marker="o", capsize=3,
                          label=probe)
        axis.axhline(0.5, color="grey", lw=0.8, ls="--")
        axis.set_title(model, fontsize=9)
        axis.set_xlabel("layer")
        axis.set_ylim(0.3, 1.02)
        if i == 1:
            axis.set_ylabel("test AUROC (problem-group interval)")
            axis.legend(fontsize=6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
