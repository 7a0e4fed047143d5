"""Readable summaries of the probe cells: a markdown report and a PNG of the model x setting matrix.

Input: the cells of ``selection.probe_cells`` (one per model x setting) with each cell's tripwire
status, and the release gate's verdict. Every number says how it was made: the evaluation scheme,
how many test problems, which layer and probe were chosen and on what (never on test), and the
margins over the position and text baselines with intervals over test problems. A red gate is
written at the top of the report and in the plot's title, so a failed run never looks released.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def markdown_report(cells: pd.DataFrame, gate_line: str, *, generated: str, averaged: str) -> str:
    """The whole ``scaling_summary.md``: gate verdict, the cell table, and what was averaged."""
    lines = [
        "# Scaling summary", "", f"**Release gate: {gate_line}**", "", f"Generated {generated}.", "",
        "Each cell: the layer and activation probe chosen on validation data (never on test), its test PR-AUC "
        "(mean over seeds, ± std with two seeds or more) beside the position and text baselines, and the "
        "seed-averaged margins over each baseline with a 95% interval from resampling test problems.", "",
        "| model | setting | scheme | test problems | selected (chosen on) | probe PR-AUC | position | text "
        "| margin over position [95% CI] | margin over text [95% CI] | tripwires |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for cell in cells.itertuples(index=False):
        spread = f" ± {cell.probe_std:.4f}" if pd.notna(cell.probe_std) else ""
        lines.append(
            f"| {cell.model_key} | {cell.setting} | {cell.scheme} | {int(cell.n_test_problems)} "
            f"| {cell.selected} ({cell.selected_on}) | {cell.probe_pr_auc:.4f}{spread} ({int(cell.n_seeds)} seed"
            f"{'s' if cell.n_seeds != 1 else ''}) | {_fmt(cell.position_pr_auc)} | {_fmt(cell.text_pr_auc)} "
            f"| {_interval(cell.margin_position, cell.ci_low_position, cell.ci_high_position)} "
            f"| {_interval(cell.margin_text, cell.ci_low_text, cell.ci_high_text)} | {cell.tripwire_status} |")
    lines += ["", "`*` marks an interval that excludes 0.", "", f"Averaged: {averaged}", ""]
    return "\n".join(lines)


def matrix_png(cells: pd.DataFrame, gate_line: str) -> bytes:
    """PNG bytes (Agg backend): colour = margin over position; text = choice, both margins, tripwires."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = sorted(cells["model_key"].unique()) if len(cells) else []
    settings = sorted(cells["setting"].unique()) if len(cells) else []
    grid = np.full((max(len(models), 1), max(len(settings), 1)), np.nan)
    # A bare Agg figure, not pyplot: no global backend switch, no figure registry to leak into.
    figure = Figure(figsize=(3.4 * max(len(settings), 1) + 1.5, 1.5 * max(len(models), 1) + 1.4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finite = cells["margin_position"].dropna() if len(cells) else pd.Series(dtype=float)
    limit = max(float(np.abs(finite).max()) if len(finite) else 0.1, 1e-6)
    for cell in cells.itertuples(index=False):
        i, j = models.index(cell.model_key), settings.index(cell.setting)
        grid[i, j] = cell.margin_position
        failed = str(cell.tripwire_status).lower() != "pass"
        text = (f"{cell.selected.split(' (')[0]}\nvs position "
                f"{_interval(cell.margin_position, cell.ci_low_position, cell.ci_high_position)}\nvs text "
                f"{_interval(cell.margin_text, cell.ci_low_text, cell.ci_high_text)}\n{cell.scheme}, "
                f"{int(cell.n_test_problems)} test problems\ntripwires: {cell.tripwire_status}")
        axes.text(j, i, text, ha="center", va="center", fontsize=6.5, color="darkred" if failed else "black")
    image = axes.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(range(len(settings)), settings)
    axes.set_yticks(range(len(models)), models)
    released = gate_line.startswith("PASS")
    axes.set_title(f"PR-AUC margin of the validation-chosen probe over position\nrelease gate: {gate_line[:90]}",
                   fontsize=9, color="black" if released else "darkred")
    figure.colorbar(image, ax=axes, label="margin over position (PR-AUC)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return "nan" if pd.isna(value) else f"{value:.4f}"


def _interval(margin: float, low: float, high: float) -> str:
    if pd.isna(margin):
        return "nan"
    star = "*" if (pd.notna(low) and (low > 0 or high < 0)) else ""
    bounds = "[nan]" if pd.isna(low) else f"[{low:+.4f}, {high:+.4f}]"
    return f"{margin:+.4f} {bounds}{star}"
