"""Each study's summary table -> FLOAT metadata with stable keys, and its one headline number.

Why here and not in each study's assets: the keys are a contract with the UI's Plots tab (which
follows a key across materialisations) and with ``ta-platform materialize``'s closing table (which
reads ``headline_*``); one module keeps the contract in one place, and a summary asset adds one line.
The thought-anchor cells are in ``defs/probes/summary.py``; the generic helpers in ``summary_metadata``.
"""

from __future__ import annotations

import pandas as pd

from ta_platform.defs.summary_metadata import cell_floats, floats, headline, stronger_baseline_headline
from ta_platform.needle.summary import margin_name

BACKTRACKING_LAGS = (0, 8)
BACKTRACKING_BASELINES = ("best_baseline", "token_identity")
NEEDLE_PROBES = ("linear_probe", "token_identity")
NEEDLE_MARGIN = margin_name("linear_probe", "token_identity")
PREFERENCE_SCOPES = ("in_distribution", "held_out_topic")


def _best(frame: pd.DataFrame, column: str) -> pd.Series | None:
    usable = frame[pd.to_numeric(frame[column], errors="coerce").notna()]
    return None if usable.empty else usable.loc[usable[column].astype(float).idxmax()]


def backtracking(metric_summary: pd.DataFrame, margin_summary: pd.DataFrame) -> dict:
    """Per model, layer and lag 0 / +8: the probe's span AUROC and its margins over token identity and
    over the best baseline; headline: the best +8 cell's margin over the best baseline."""
    if metric_summary.empty or margin_summary.empty:
        return {}
    values = {}
    auroc = metric_summary[(metric_summary["probe"] == "linear_probe") & (metric_summary["metric"] == "auroc")
                           & metric_summary["lag"].isin(BACKTRACKING_LAGS)]
    for row in auroc.to_dict("records"):
        values[f"{row['model']}/{row['layer']}/lag{int(row['lag']):+d}/probe_auroc"] = row["mean"]
    margins = margin_summary[(margin_summary["target"] == "span") & (margin_summary["metric"] == "auroc")
                             & margin_summary["lag"].isin(BACKTRACKING_LAGS)
                             & margin_summary["baseline"].isin(BACKTRACKING_BASELINES)]
    # the margin table's own columns (margin, ci_low, ci_high); older stores named them mean_*
    margin, low, high = (("margin", "ci_low", "ci_high") if "margin" in margins.columns
                         else ("mean_margin", "mean_ci_low", "mean_ci_high"))
    for row in margins.to_dict("records"):
        values[f"{row['model']}/{row['layer']}/lag{int(row['lag']):+d}/margin_{row['baseline']}"] = row[margin]
    lead = margins[(margins["lag"] == max(BACKTRACKING_LAGS)) & (margins["baseline"] == "best_baseline")]
    best = _best(lead, margin) if len(lead) else None
    top = {} if best is None else headline(
        f"{best['model']}/{best['layer']} lag +{max(BACKTRACKING_LAGS)}",
        "span AUROC margin over the best baseline", best[margin], best[low], best[high])
    return {**floats(values), **top}


def needle(summary: pd.DataFrame) -> dict:
    """Per model and layer: test AUROC of the token probe and of token identity, and the probe's margin
    over token identity; headline: the best layer's margin with its own interval (the summary's
    ``linear_probe-token_identity`` row: problem groups resampled, the margin recomputed per draw)."""
    test = summary[(summary["metric"] == "auroc") & (summary["split"] == "test")]
    values = {f"{row.model}/L{row.layer}/{row.probe}_auroc": row.mean
              for row in test[test["probe"].isin(NEEDLE_PROBES)].itertuples()}
    margins = test[test["probe"] == NEEDLE_MARGIN]
    for row in margins.itertuples():
        values[f"{row.model}/L{row.layer}/margin_token_identity"] = row.mean
    best = _best(margins, "mean") if len(margins) else None
    top = {} if best is None else headline(f"{best['model']}/L{best['layer']}",
                                           "test AUROC margin of the token probe over token identity",
                                           best["mean"], best["ci_low"], best["ci_high"])
    return {**floats(values), **top}


def preferences(long_summary: pd.DataFrame) -> dict:
    """Per feature set and target: Pearson r in distribution and on held-out topics; headline: the best
    held-out-topic r of an activation probe, with its interval."""
    r = long_summary[(long_summary["metric"] == "pearson_r") & long_summary["scope"].isin(PREFERENCE_SCOPES)]
    values = {f"{row.features}/{row.target}/{row.scope}_r": row.value for row in r.itertuples()}
    held_out = r[(r["scope"] == "held_out_topic") & r["features"].astype(str).str.startswith("activations")]
    best = _best(held_out, "value") if len(held_out) else None
    top = {} if best is None else headline(f"{best['features']} ({best['target']})", "held-out-topic Pearson r",
                                           best["value"], best.get("ci_low"), best.get("ci_high"))
    return {**floats(values), **top}


def ood(results: pd.DataFrame) -> dict:
    """Per feature set: pooled Pearson r of probe vs behavioural deltas and its permutation p; headline:
    the best pooled r."""
    pooled = results[results["experiment"] == "pooled"]
    values = {}
    for row in pooled.itertuples():
        values[f"{row.features}/pooled_r"] = row.pearson_r
        values[f"{row.features}/pooled_p"] = row.p_value
    best = _best(pooled, "pearson_r") if len(pooled) else None
    top = {} if best is None else headline(f"{best['features']} (p={float(best['p_value']):.3f})",
                                           "pooled Pearson r, probe vs behavioural delta", best["pearson_r"])
    return {**floats(values), **top}


def function_tags(summary: pd.DataFrame) -> dict:
    """Per model, layer and setting: the tag probe's test PR-AUC and its margins over position and text;
    headline: the best cell's margin over its stronger baseline, with that margin's own interval (the
    anchors summary's rule, ``summary_metadata.stronger_baseline_headline``)."""
    if summary.empty:
        return {}
    cell = ("model_key", "layer_key", "setting")
    return {**cell_floats(summary, cell, ("probe_pr_auc", "margin_position", "margin_text")),
            **stronger_baseline_headline(summary, cell, f"test PR-AUC margin of the {summary['tag'].iloc[0]} probe "
                                                        "over the stronger baseline")}
