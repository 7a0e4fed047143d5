"""The study's summary: per model, AUROC by layer with intervals across seeds and over documents.

Two intervals because they answer different questions: across seeds (min..max of the seed means)
says how much the sampled negatives and balance draws move the number; over documents (the mean of
each seed's document-bootstrap interval) says how much another set of test documents would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = ["model", "layer", "probe", "split", "metric", "mean", "seed_min", "seed_max", "n_seeds", "ci_low",
                   "ci_high"]
REPORTED_PROBES = ("linear_probe", "token_identity", "position", "doc_monitor_max", "doc_monitor_topk")


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """``needle_probe_metrics`` rows -> one row per (model, layer, probe, split) for auroc, pr_auc, f1 and the
    top-token rate, with seed spread and the mean document interval (AUROC only)."""
    if metrics.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    wide = metrics.pivot_table(index=["model", "layer", "probe", "split", "seed"], columns="metric", values="value",
                               aggfunc="first").reset_index()
    rows = []
    for (model, layer, probe, split), group in wide.groupby(["model", "layer", "probe", "split"], sort=True):
        for metric in ("auroc", "pr_auc", "f1", "top_token_in_needle_rate"):
            if metric not in group or group[metric].isna().all():
                continue
            values = group[metric].to_numpy(dtype=np.float64)
            low = group["auroc_ci_low"].mean() if metric == "auroc" and "auroc_ci_low" in group else np.nan
            high = group["auroc_ci_high"].mean() if metric == "auroc" and "auroc_ci_high" in group else np.nan
            rows.append({"model": model, "layer": int(layer), "probe": probe, "split": split, "metric": metric,
                         "mean": float(np.nanmean(values)), "seed_min": float(np.nanmin(values)),
                         "seed_max": float(np.nanmax(values)), "n_seeds": int(np.isfinite(values).sum()),
                         "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def markdown_table(summary: pd.DataFrame, split: str = "test") -> str:
    """One line per model x layer: test AUROC of each probe as ``mean [doc interval] (seeds min-max)``."""
    auc = summary[(summary["metric"] == "auroc") & (summary["split"] == split)]
    probes = [p for p in REPORTED_PROBES if p in set(auc["probe"])]
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
    """Test AUROC by layer per model (one panel per model), error bars = mean document interval."""
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
            err = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]).clip(min=0)
            axis.errorbar(rows["layer"], rows["mean"], yerr=err, marker="o", capsize=3, label=probe)
        axis.axhline(0.5, color="grey", lw=0.8, ls="--")
        axis.set_title(model, fontsize=9)
        axis.set_xlabel("layer")
        axis.set_ylim(0.3, 1.02)
        if i == 1:
            axis.set_ylabel("test AUROC")
            axis.legend(fontsize=6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
