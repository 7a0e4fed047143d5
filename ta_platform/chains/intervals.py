"""Across-seed intervals of the study's margins: resample chain problems, recompute the seed-averaged margin.

Why here and not in SQL (issue 20, item 1): the old summary averaged each seed's chain-bootstrap
bounds (and gave metrics mean +- 1.96 SD/sqrt(n) over 2-3 re-splits of the same chains). Neither is
an interval of the reported number: the seeds re-split ONE set of chains, so their test sets share
problems. The reported number is the mean over seeds of the probe's test AUROC minus a baseline's;
its interval (``probing.unit_bootstrap.seed_averaged_interval``) draws chain problems with
replacement from the union of every seed's test problems, lets each seed score the rows of the drawn
problems in its own test set (with multiplicity) and recomputes that seed-averaged margin per draw.
SQL keeps what SQL should: point means and counts (``dbt_like_sql/backtracking/``).

Inputs are what the lag probes stored per seed: every test row's problem unit, labels and each
scorer's score (``lag_probes.SCORE_COLUMNS``), and the baseline each seed chose on validation
(``backtracking_probe_margins.chosen``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_platform.probing.rank_auroc import auroc_of_ranks, dense_ranks
from ta_platform.probing.unit_bootstrap import SeedRows, seed_averaged_interval

from .baselines import applicable_baselines
from .lag_probes import PROBE, TARGETS
from .splits import UNIT

SUMMARY_COLUMNS = ["model", "layer", "lag", "target", "baseline", "metric", "margin", "ci_low", "ci_high",
                   "probe_auroc", "baseline_auroc", "chosen", "n_seeds", "n_units", "n_valid_resamples", "unit",
                   "statistic"]
STATISTIC = ("mean over seeds of test AUROC(probe) - AUROC(baseline), recomputed on every draw of chain "
             "problems (percentile interval)")


def margin_auroc_statistic(labels: np.ndarray, ranks: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Columns [probe, baseline 1..m] as dense ranks (``probing.rank_auroc``), rows weighted by how often the
    draw holds them: [AUROC(probe) - AUROC(b_j) for each j, AUROC of every column]."""
    values = auroc_of_ranks(labels, ranks, weights)
    return np.concatenate([values[0] - values[1:], values])


def margin_summary(test_scores: pd.DataFrame, margins: pd.DataFrame, *, n_resamples: int = 1000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Rows of table ``backtracking_margin_summary`` (``SUMMARY_COLUMNS``): for every (model, layer, lag,
    target) the seed-averaged AUROC margin of the probe over each baseline that applies at the lag and
    over each seed's validation-best baseline, with a chain-problem bootstrap interval.

    ``test_scores``: the stored test rows of every seed (``model, layer, seed`` + ``SCORE_COLUMNS``);
    ``margins``: rows of ``backtracking_probe_margins`` (their ``best_baseline`` rows name each seed's choice).
    """
    missing = {"model", "layer", "seed", "lag", "unit_id", "span", "onset", PROBE} - set(test_scores.columns)
    if missing:
        raise ValueError(f"test scores lack column(s) {sorted(missing)}: re-materialise backtracking_lag_probes")
    best = margins[margins["baseline"] == "best_baseline"].set_index(["model", "layer", "lag", "target", "seed"])["chosen"]
    rows = []
    for (model, layer, lag), cell in test_scores.groupby(["model", "layer", "lag"], sort=True):
        baselines = list(applicable_baselines(int(lag)))
        for target in TARGETS:
            seeds, chosen = [], []
            for seed_value, part in cell.groupby("seed", sort=True):
                key = (model, layer, lag, target, seed_value)
                if key not in best.index:
                    raise ValueError(f"{model}/{layer} lag {lag} {target} seed {seed_value}: no best_baseline row in "
                                     "backtracking_probe_margins (stored scores and margins are from different runs)")
                span, onset = part["span"].to_numpy(bool), part["onset"].to_numpy(bool)
                keep = np.ones(len(part), bool) if target == "span" else onset | ~span
                label = (span if target == "span" else onset)[keep]
                columns = [PROBE, *baselines, best[key]]
                seeds.append(SeedRows(int(seed_value), label, part["unit_id"].to_numpy()[keep],
                                      dense_ranks(part[columns].to_numpy(np.float64)[keep])))
                chosen.append(str(best[key]))
            interval = seed_averaged_interval(seeds, margin_auroc_statistic, n_resamples=n_resamples, seed=seed,
                                              level=level, unit=UNIT, statistic_name=STATISTIC, weighted=True)
            names = [*baselines, "best_baseline"]
            n = len(names)
            for j, name in enumerate(names):
                rows.append({"model": model, "layer": layer, "lag": int(lag), "target": target, "baseline": name,
                             "metric": "auroc", "margin": interval.point[j], "ci_low": interval.low[j],
                             "ci_high": interval.high[j], "probe_auroc": interval.point[n],
                             "baseline_auroc": interval.point[n + 1 + j],
                             "chosen": ",".join(sorted(set(chosen))) if name == "best_baseline" else name,
                             "n_seeds": len(seeds), "n_units": interval.n_units,
                             "n_valid_resamples": interval.n_valid, "unit": interval.unit,
                             "statistic": interval.statistic})
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return frame.astype({"lag": "int64", "n_seeds": "int64", "n_units": "int64", "n_valid_resamples": "int64",
                         "margin": "float64", "ci_low": "float64", "ci_high": "float64"})
