"""Readable summaries of the aggregate rows: a markdown table and a PNG of the model x setting matrix.

Input rows (one per model_key, layer_key, setting, probe, metric) carry ``mean, std, n_seeds``,
the probe's margin over the position baseline with its interval (``margin, ci_low, ci_high``) and
the slice's ``tripwire_status``. Each cell reports the BEST non-baseline probe (highest mean of the
chosen metric over layers and probes, ties by name) next to the baseline, because "did anything
beat position, with an interval excluding 0, with green tripwires" is the question the matrix answers.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

REPORT_COLUMNS = (
    "model_key",
    "layer_key",
    "setting",
    "probe",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "margin",
    "ci_low",
    "ci_high",
    "tripwire_status",
)
CELL_COLUMNS = [
    "model_key",
    "setting",
    "layer_key",
    "probe",
    "mean",
    "std",
    "n_seeds",
    "baseline_mean",
    "margin",
    "ci_low",
    "ci_high",
    "tripwire_status",
]


def best_probe_cells(
    rows: pd.DataFrame, metric: str = "pr_auc", baseline: str = "position_baseline"
) -> pd.DataFrame:
    """One row per (model_key, setting): the best probe of any layer and its margin over the baseline."""
    missing = [column for column in REPORT_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(f"aggregate rows lack columns {missing}")
    selected = rows[rows["metric"] == metric]
    cells = []
    for _, group in selected.groupby(["model_key", "setting"], sort=True):
        candidates = group[(group["probe"] != baseline) & group["mean"].notna()]
        if candidates.empty:
            continue
        best = candidates.sort_values(["mean", "layer_key", "probe"], ascending=[False, True, True]).iloc[0]
        base = group[(group["probe"] == baseline) & (group["layer_key"] == best["layer_key"])]
        cell = {column: best[column] for column in CELL_COLUMNS if column in best.index}
        cell["baseline_mean"] = float(base["mean"].iloc[0]) if len(base) else float("nan")
        cells.append(cell)
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


def markdown_matrix(rows: pd.DataFrame, metric: str = "pr_auc", baseline: str = "position_baseline") -> str:
    """Markdown table of the model x setting matrix (best probe, margin with interval, tripwires)."""
    cells = best_probe_cells(rows, metric, baseline)
    header = (
        f"| model | setting | layer | best probe | {metric} mean ± std (seeds) | {baseline} "
        f"| margin [95% CI] | tripwires |\n|---|---|---|---|---:|---:|---:|---|"
    )
    lines = [header]
    for cell in cells.itertuples(index=False):
        lines.append(
            f"| {cell.model_key} | {cell.setting} | {cell.layer_key} | {cell.probe} "
            f"| {cell.mean:.4f} ± {_fmt(cell.std)} ({int(cell.n_seeds)}) | {_fmt(cell.baseline_mean)} "
            f"| {_signed(cell.margin)} [{_signed(cell.ci_low)}, {_signed(cell.ci_high)}]{_star(cell)} "
            f"| {cell.tripwire_status} |"
        )
    lines.append("")
    lines.append("`*` marks an interval that excludes 0 (problem-level bootstrap).")
    return "\n".join(lines) + "\n"


def matrix_png(rows: pd.DataFrame, metric: str = "pr_auc", baseline: str = "position_baseline") -> bytes:
    """PNG bytes (Agg backend) of the matrix: colour = margin over the baseline, text = probe, interval, tripwires."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = best_probe_cells(rows, metric, baseline)
    models = sorted(cells["model_key"].unique()) if len(cells) else []
    settings = sorted(cells["setting"].unique()) if len(cells) else []
    grid = np.full((max(len(models), 1), max(len(settings), 1)), np.nan)
    # A bare Agg figure, not pyplot: no global backend switch, no figure registry to leak into.
    figure = Figure(figsize=(2.8 * max(len(settings), 1) + 1.5, 1.3 * max(len(models), 1) + 1.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    limit = float(np.nanmax(np.abs(cells["margin"]))) if len(cells) and cells["margin"].notna().any() else 0.1
    for cell in cells.itertuples(index=False):
        i, j = models.index(cell.model_key), settings.index(cell.setting)
        grid[i, j] = cell.margin
        failed = str(cell.tripwire_status).lower() not in ("pass", "passed", "ok", "true")
        text = (
            f"{cell.probe}\n{cell.layer_key}\n{_signed(cell.margin)} [{_signed(cell.ci_low)}, {_signed(cell.ci_high)}]"
            f"\ntripwires: {cell.tripwire_status}"
        )
        axes.text(j, i, text, ha="center", va="center", fontsize=7, color="darkred" if failed else "black")
    image = axes.imshow(grid, cmap="RdBu", vmin=-max(limit, 1e-6), vmax=max(limit, 1e-6), aspect="auto")
    axes.set_xticks(range(len(settings)), settings)
    axes.set_yticks(range(len(models)), models)
    axes.set_title(f"best probe: {metric} margin over {baseline}")
    figure.colorbar(image, ax=axes, label=f"{metric} margin")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return "nan" if pd.isna(value) else f"{value:.4f}"


def _signed(value: float) -> str:
    return "nan" if pd.isna(value) else f"{value:+.4f}"


def _star(cell) -> str:
    return "*" if (cell.ci_low > 0 or cell.ci_high < 0) else ""
