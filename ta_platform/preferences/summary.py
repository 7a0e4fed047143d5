"""Probe vs content baseline, side by side, as a table and a PNG bar chart.

Why: the study's headline is one comparison (does the activation probe beat text embeddings, in
distribution and on a held-out topic?), so the summary is exactly that table and one figure.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

SCOPES = ("in_distribution", "held_out_topic")


def summarise_probes(report: pd.DataFrame) -> pd.DataFrame:
    """Mean metric per (target, scope, metric) with one column per feature set.

    Held-out-topic values are means over the hold-one-topic-out folds; ``n_folds`` says how many.
    """
    rows = report[report["scope"].isin(SCOPES)]
    table = rows.pivot_table(index=["target", "scope", "metric"], columns="features", values="value",
                             aggfunc="mean").reset_index()
    folds = rows.groupby(["target", "scope", "metric"])["held_out_topic"].nunique().rename("n_folds").reset_index()
    table = table.merge(folds, on=["target", "scope", "metric"])
    table.columns.name = None
    order = {s: i for i, s in enumerate(SCOPES)}
    return table.sort_values(["metric", "target", "scope"], key=lambda c: c.map(order) if c.name == "scope" else c,
                             ignore_index=True)


def summary_intervals(report: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """95% intervals per (target, scope, metric, features): ``ci_low, ci_high``.

    In distribution: the report's bootstrap over the scored eval tasks. Held-out topic: the mean over
    the hold-one-topic-out folds, bootstrapped over folds (topics are the sampled units), seeded.
    """
    rows = []
    keys = ["target", "scope", "metric", "features"]
    for (target, scope, metric, features), group in report[report["scope"].isin(SCOPES)].groupby(keys):
        low = high = float("nan")
        if scope == "in_distribution" and "ci_low" in group.columns:
            low, high = float(group["ci_low"].iloc[0]), float(group["ci_high"].iloc[0])
        elif scope == "held_out_topic":
            values = group["value"].dropna().to_numpy(float)
            if len(values) >= 3:
                draws = np.random.default_rng(seed).integers(0, len(values), (n_resamples, len(values)))
                means = values[draws].mean(axis=1)
                low, high = float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
        rows.append({"target": target, "scope": scope, "metric": metric, "features": features,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*keys, "ci_low", "ci_high"])


def long_summary(summary: pd.DataFrame, intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary with one row per feature set (``target, scope, metric, features, value, n_folds,
    ci_low, ci_high``; intervals NaN when not given).

    Why: the wide table has one column per feature set, and those depend on the model registry, so
    the DuckDB table (declared once, in ``ta_platform/store/tables.py``) stores them as rows.
    """
    keys = ["target", "scope", "metric", "n_folds"]
    features = [column for column in summary.columns if column not in keys]
    long = summary.melt(id_vars=keys, value_vars=features, var_name="features", value_name="value")
    if intervals is None:
        long = long.assign(ci_low=np.nan, ci_high=np.nan)
    else:
        long = long.merge(intervals, on=["target", "scope", "metric", "features"], how="left")
    return long[["target", "scope", "metric", "features", "value", "n_folds", "ci_low", "ci_high"]]


def interval_table(long: pd.DataFrame) -> pd.DataFrame:
    """Wide, readable: one column per feature set, cells ``value [low, high]``."""
    text = long.assign(cell=[f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in
                             zip(long["value"], long["ci_low"], long["ci_high"], strict=True)])
    wide = text.pivot_table(index=["target", "scope", "metric", "n_folds"], columns="features", values="cell",
                            aggfunc="first").reset_index()
    wide.columns.name = None
    return wide


def plot_summary(summary: pd.DataFrame, *, metric: str = "pearson_r", title: str = "Utility probes") -> bytes:
    """Grouped bars (feature sets) for each target x scope; returns PNG bytes (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    data = summary[summary["metric"] == metric]
    features = [c for c in data.columns if c not in ("target", "scope", "metric", "n_folds")]
    groups = [f"{t}\n{s.replace('_', ' ')}" for t, s in zip(data["target"], data["scope"], strict=True)]
    figure = Figure(figsize=(max(5.0, 1.6 * len(groups)), 4.0), dpi=100)
    axes = figure.subplots()
    width = 0.8 / max(len(features), 1)
    for k, name in enumerate(features):
        positions = [g + (k - (len(features) - 1) / 2) * width for g in range(len(groups))]
        axes.bar(positions, data[name].fillna(0.0).to_numpy(), width=width, label=name)
    axes.set_xticks(range(len(groups)), groups, fontsize=8)
    axes.set_ylabel(metric.replace("_", " "))
    axes.axhline(0.0, color="black", linewidth=0.6)
    axes.set_title(title)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(len(features), 3),
                frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
