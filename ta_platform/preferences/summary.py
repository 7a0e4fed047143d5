"""Probe vs content baseline, side by side, as a table and a PNG bar chart.

Why: the study's headline is one comparison (does the activation probe beat text embeddings, in
distribution and on a held-out topic?), so the summary is exactly that table and one figure.
"""

from __future__ import annotations

import io

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


def long_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with one row per feature set (``target, scope, metric, features, value, n_folds``).

    Why: the wide table has one column per feature set, and those depend on the model registry, so
    the DuckDB table (declared once, in ``ta_platform/store/tables.py``) stores them as rows.
    """
    keys = ["target", "scope", "metric", "n_folds"]
    features = [column for column in summary.columns if column not in keys]
    long = summary.melt(id_vars=keys, value_vars=features, var_name="features", value_name="value")
    return long[["target", "scope", "metric", "features", "value", "n_folds"]]


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
