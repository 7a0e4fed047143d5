"""The study's report: a layer x lag table per model and a layer x lag heatmap PNG per model.

Why both span and onset panels: most of the "ahead" signal on span membership is persistence (being
inside a section already); the onset panel and the margins over every baseline are where a probe
shows it knows more. Every interval is the one of ``backtracking_margin_summary``: chain problems
resampled, the seed-averaged AUROC margin recomputed per draw (``intervals.py``). A cell "beats the
baselines" only when that interval is above 0 over EVERY baseline that applies at its lag
(``baselines.applicable_baselines``: token identity and position; persistence and the lag-0 probe
too at k != 0). A star marks a cell whose interval over the validation-best baseline is above 0.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from .baselines import BASELINES, applicable_baselines

MARGIN_BASELINES = (*BASELINES, "best_baseline")
TABLE_PROBES = ("linear_probe", "token_identity", "persistence", "position", "lag0_probe")


def _mean(metrics: pd.DataFrame, probe: str, metric: str) -> pd.Series:
    rows = metrics[(metrics["probe"] == probe) & (metrics["metric"] == metric)]
    return rows.set_index(["layer", "lag"])["mean"]


def layer_lag_table(metrics: pd.DataFrame, margins: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per (layer, lag): probe metrics, baselines' AUROC and the probe's AUROC margins.

    ``metrics``: rows of ``backtracking_metric_summary``; ``margins``: ``backtracking_margin_summary``.
    """
    metrics, margins = metrics[metrics["model"] == model], margins[margins["model"] == model]
    table = pd.DataFrame({
        "probe_auroc": _mean(metrics, "linear_probe", "auroc"), "probe_pr_auc": _mean(metrics, "linear_probe", "pr_auc"),
        "probe_f1": _mean(metrics, "linear_probe", "f1"), "probe_onset_auroc": _mean(metrics, "linear_probe", "onset_auroc"),
        **{f"{p}_auroc": _mean(metrics, p, "auroc") for p in TABLE_PROBES[1:]},
        **{f"{p}_f1": _mean(metrics, p, "f1") for p in TABLE_PROBES[1:3]},
        **{f"{p}_onset_auroc": _mean(metrics, p, "onset_auroc") for p in TABLE_PROBES[1:3]},
        "prevalence": _mean(metrics, "labels", "prevalence"),
    })
    for target in ("span", "onset"):
        for baseline in MARGIN_BASELINES:
            rows = margins[(margins["target"] == target) & (margins["baseline"] == baseline)
                           & (margins["metric"] == "auroc")].set_index(["layer", "lag"])
            low, high = rows["ci_low"].reindex(table.index), rows["ci_high"].reindex(table.index)
            margin = rows["margin"].reindex(table.index)
            table[f"{target}_margin_{baseline}"] = margin
            table[f"{target}_vs_{baseline}"] = [
                (f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else f"{m:+.3f}") if np.isfinite(m) else ""
                for m, lo, hi in zip(margin, low, high, strict=True)]
            table[f"{target}_beats_{baseline}"] = (low > 0).to_numpy()  # a missing interval is not a win
    table = table.reset_index()
    table["layer_index"] = table["layer"].str[1:].astype(int)
    return table.sort_values(["layer_index", "lag"]).drop(columns="layer_index").reset_index(drop=True)


def beats_baselines(table: pd.DataFrame, target: str = "span") -> pd.DataFrame:
    """(layer, lag) cells where the probe beats EVERY baseline that applies at the lag (interval above 0).

    At lag 0 those are token identity and position (persistence is the label itself, the lag-0 probe
    the probe); at k != 0 also persistence and the lag-0 probe. A missing margin is not a win.
    """
    keep = pd.Series(True, index=table.index)
    for name in BASELINES:
        applies = table["lag"].map(lambda lag, name=name: name in applicable_baselines(int(lag))).astype(bool)
        column = f"{target}_beats_{name}"
        beaten = table[column].fillna(False).astype(bool) if column in table else pd.Series(False, index=table.index)
        keep &= ~applies | beaten
    return table.loc[keep, ["layer", "lag"]]


def markdown_table(table: pd.DataFrame) -> str:
    columns = ["layer", "lag", "probe_auroc", "probe_pr_auc", "probe_f1", "probe_onset_auroc", "token_identity_auroc",
               "persistence_auroc", "position_auroc", "lag0_probe_auroc", "token_identity_f1", "persistence_f1",
               "token_identity_onset_auroc", "persistence_onset_auroc",
               *[f"{target}_vs_{name}" for target in ("span", "onset") for name in MARGIN_BASELINES]]
    shown = table[[c for c in columns if c in table]].copy()
    return shown.to_markdown(index=False, floatfmt=".3f")


def heatmap_png(table: pd.DataFrame, model: str) -> bytes:
    """Two panels (span AUROC, onset AUROC) of layer x lag; text = AUROC and margin over the best baseline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = list(dict.fromkeys(table["layer"]))
    lags = sorted(table["lag"].unique())
    figure = Figure(figsize=(1.1 * len(lags) * 2 + 2.5, 0.8 * len(layers) + 2.2))
    FigureCanvasAgg(figure)
    for panel, (target, column) in enumerate((("span", "probe_auroc"), ("onset", "probe_onset_auroc"))):
        axes = figure.add_subplot(1, 2, panel + 1)
        grid = np.full((len(layers), len(lags)), np.nan)
        for row in table.itertuples(index=False):
            i, j = layers.index(row.layer), lags.index(row.lag)
            grid[i, j] = getattr(row, column)
            margin = getattr(row, f"{target}_margin_best_baseline")
            beats = getattr(row, f"{target}_beats_best_baseline")
            star = "*" if pd.notna(beats) and bool(beats) else ""
            text = f"{grid[i, j]:.2f}" + (f"\n{margin:+.2f}{star}" if np.isfinite(margin) else "")
            axes.text(j, i, text, ha="center", va="center", fontsize=7)
        image = axes.imshow(grid, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
        axes.set_xticks(range(len(lags)), [f"{lag:+d}" for lag in lags])
        axes.set_yticks(range(len(layers)), layers)
        axes.set_xlabel("lag k (activation at t predicts label at t + k; k > 0 = ahead)")
        axes.set_title(f"{model}: {target} AUROC\n(margin over best baseline, * = CI > 0)", fontsize=9)
        figure.colorbar(image, ax=axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
