"""Lag probes on one (model, layer) slice for one seed: a logistic probe per lag, its baselines,
metrics on test chains, the test rows' scores and the per-seed point margins.

Science choices (what the seed's public version got wrong, done right here):
- the split is the seed's ONE dataset-wide assignment by chain problem (``splits.DatasetSplit``,
  recorded once and read by every slice and model); no problem is in two splits;
- every lag and every L2 strength are heads of ONE probe-engine fit (``probing.engine``): the lags
  share the activations; the L2 strength is chosen per lag on the validation chains (by val PR-AUC,
  no refit on train + val so that the validation scores used for the threshold are honest);
  the F1 threshold of every scorer is the one maximising F1 on validation
  (``probing.thresholds``); every reported number is on the test chains;
- class weighting ``balanced`` (the probing package's logistic probe);
- one probe per lag is trained on span membership at t + k (``in_backtracking``); its onset score
  is the same probe evaluated only on rows whose target is an onset (positive) or outside every
  backtracking section (negative): "does it see the start coming", not "is it inside a section";
- baselines beside every probe (``baselines.py``); the per-seed margins here are points (probe
  AUROC minus each baseline's, and minus the best baseline chosen on validation AUROC). Their
  interval is NOT per seed: ``intervals.margin_summary`` resamples chain problems over the test
  rows of every seed (``test_scores``) and recomputes the seed-averaged margin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.engine import as_row_source, fit_logistic_heads
from ta_platform.probing.metrics import auroc, pr_auc
from ta_platform.probing.thresholds import best_f1_threshold, f1_at

from .baselines import applicable_baselines, position_bins, rate_by_key
from .lags import DEFAULT_LAGS, lag_pairs
from .splits import DatasetSplit

PROBE = "linear_probe"
METRIC_COLUMNS = ["lag", "probe", "metric", "value"]
MARGIN_COLUMNS = ["lag", "target", "baseline", "metric", "margin", "chosen"]
SCORERS = (PROBE, "token_identity", "position", "persistence", "lag0_probe")
SCORE_COLUMNS = ["lag", "chain_id", "unit_id", "span", "onset", *SCORERS]
TARGETS = ("span", "onset")


@dataclass(frozen=True)
class LagConfig:
    """Every knob of the lag probes and the study's tripwires; stored as provenance (``as_dict``)."""

    lags: tuple[int, ...] = DEFAULT_LAGS
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # logistic C = 1/L2, strongest first; chosen on val
    max_iter: int = 300
    token_prior: float = 1.0
    position_bins: int = 20
    bootstrap_resamples: int = 1000  # chain-problem draws of the seed-averaged margin (intervals.py)
    ci_level: float = 0.95
    # tripwires
    min_aligned_fraction: float = 0.9
    min_mean_coverage: float = 0.8
    prevalence_low: float = 0.005
    prevalence_high: float = 0.25
    tripwire_max_chains: int = 60
    null_permutations: int = 10
    planted_noise_sd: float = 0.1
    planted_min_pr_auc: float = 0.95

    def probe_config(self) -> ProbeConfig:
        """The probing package's config for the linear probe (and the tripwires built on it)."""
        return ProbeConfig(fractions=self.fractions, probes=(PROBE,), baseline="position_baseline",
                           l2_c_grid=self.c_grid, logistic_max_iter=self.max_iter, refit_on_train_val=False,
                           bootstrap_resamples=0, null_permutations=self.null_permutations,
                           planted_noise_sd=self.planted_noise_sd, planted_min_pr_auc=self.planted_min_pr_auc)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class SliceResult:
    metrics: pd.DataFrame  # METRIC_COLUMNS
    margins: pd.DataFrame  # MARGIN_COLUMNS: per-seed points, no interval (see intervals.py)
    split: dict[str, str]  # chain id -> train / val / test, as this slice used it (the recorded split)
    weights: dict[int, dict[str, np.ndarray]]  # lag -> probe arrays
    test_scores: pd.DataFrame  # SCORE_COLUMNS: every test row of every lag, labels, unit and each scorer


def run_lag_slice(tokens: pd.DataFrame, X, split: DatasetSplit, config: LagConfig | None = None) -> SliceResult:
    """Every lag of one slice. ``tokens`` (``token_labels`` rows, contiguous per chain) align with the rows
    of ``X`` (an array, or an on-demand row view such as ``store.PartitionRows``: the layer is never copied);
    ``split`` is the seed's recorded dataset-wide split (its seed also seeds the probe fits).

    Every lag and every C of the grid are heads of ONE engine fit over the training rows
    (``probing.engine``): the lags share the activations, only their targets differ (a lag whose target
    falls past the chain's end is masked). C is chosen per lag on validation PR-AUC, as ``select_and_fit``
    chooses it (ties: the first, strongest-regularised value; no usable validation: the middle value).
    """
    config = config or LagConfig()
    source = as_row_source(X)
    if source.n_rows != len(tokens):
        raise ValueError(f"{source.n_rows} activation rows for {len(tokens)} token rows")
    chains = tokens["chain_id"].astype(str).to_numpy()
    row_split = split.splits_of(chains)
    row_unit = split.units_of(chains)
    in_bt = tokens["in_backtracking"].to_numpy(dtype=bool)
    onset = tokens["backtrack_onset"].to_numpy(dtype=bool)
    token_id = tokens["token_id"].to_numpy()
    bins = position_bins(tokens["rel_position"].to_numpy(), config.position_bins)
    lags = sorted(set(config.lags), key=lambda k: (k != 0, k))  # lag 0 first: its scores are a baseline
    pairs = {lag: lag_pairs(tokens, lag) for lag in lags}
    for lag, (src, tgt) in pairs.items():
        part, y = row_split[src], in_bt[tgt]
        counts = [int(y[part == name].sum()) for name in ("train", "val", "test")]
        if min(counts) == 0:
            raise ValueError(f"lag {lag}: a split has no backtracking token (train {counts[0]}, val {counts[1]}, "
                             f"test {counts[2]}); too few chains")
    chosen, decisions, heads = _fit_lag_heads(source, pairs, lags, in_bt, row_split, config)
    lag0_scores = decisions[:, 0]  # lag 0 is the first head
    metrics, margins, weights, test_scores = [], [], {}, []
    for j, lag in enumerate(lags):
        src, tgt = pairs[lag]
        part = row_split[src]
        y, y_onset, groups = in_bt[tgt], onset[tgt], chains[src]
        train, val, test = (part == "train"), (part == "val"), (part == "test")
        scores = {PROBE: decisions[src, j]}
        weights[lag] = heads.head(j, chosen[j])
        scores["token_identity"] = rate_by_key(token_id[src][train], y[train], token_id[src], config.token_prior)
        scores["position"] = rate_by_key(bins[src][train], y[train], bins[src], config.token_prior)
        if "persistence" in applicable_baselines(lag):
            scores["persistence"] = in_bt[src].astype(np.float64)
            scores["lag0_probe"] = lag0_scores[src]
        for name, score in scores.items():
            threshold = best_f1_threshold(y[val], score[val])
            onset_rows = test & (y_onset | ~y)
            metrics += [(lag, name, "auroc", auroc(y[test], score[test])),
                        (lag, name, "pr_auc", pr_auc(y[test], score[test])),
                        (lag, name, "f1", f1_at(y[test], score[test], threshold)),
                        (lag, name, "onset_auroc", auroc(y_onset[onset_rows], score[onset_rows])),
                        (lag, name, "onset_pr_auc", pr_auc(y_onset[onset_rows], score[onset_rows])),
                        (lag, name, "val_auroc", auroc(y[val], score[val]))]
        metrics += [(lag, PROBE, "selected_C", heads.c_grid[chosen[j]]),
                    (lag, "labels", "prevalence", float(y[test].mean())),
                    (lag, "labels", "n_test_rows", float(test.sum())),
                    (lag, "labels", "n_test_onsets", float(y_onset[test].sum())),
                    (lag, "labels", "n_test_chains", float(len(set(groups[test]))))]
        margins += _margins(lag, y, y_onset, scores, val, test)
        test_scores.append(_test_rows(lag, test, groups, row_unit[src], y, y_onset, scores))
    used = dict(zip(chains, row_split, strict=True))
    return SliceResult(pd.DataFrame(metrics, columns=METRIC_COLUMNS), pd.DataFrame(margins, columns=MARGIN_COLUMNS),
                       used, weights, pd.concat(test_scores, ignore_index=True))


def _fit_lag_heads(source, pairs, lags, in_bt, row_split, config: LagConfig):
    """One engine fit of (lags x C grid) heads on the training rows; per lag the C chosen on validation
    PR-AUC; the chosen head's decision on every row: ``(chosen grid index per lag, [rows, lags], heads)``."""
    n = source.n_rows
    targets = np.zeros((n, len(lags)), dtype=np.int8)
    present = np.zeros((n, len(lags)), dtype=bool)
    for j, lag in enumerate(lags):
        src, tgt = pairs[lag]
        targets[src, j] = in_bt[tgt]
        present[src, j] = True
    train = np.flatnonzero(row_split == "train")
    val = np.flatnonzero(row_split == "val")
    heads = fit_logistic_heads(source, targets[train], rows=train, mask=present[train], c_grid=config.c_grid,
                               max_iter=config.max_iter)
    val_decision = heads.decision(source, val)  # [val rows, lags, grid]
    chosen = []
    for j in range(len(lags)):
        keep = present[val, j]
        labels = targets[val[keep], j]
        usable = keep.any() and 0 < int(labels.sum()) < int(keep.sum())
        scores = [pr_auc(labels, val_decision[keep, j, g]) if usable else np.nan for g in range(len(heads.c_grid))]
        finite = [g for g, value in enumerate(scores) if np.isfinite(value)]
        chosen.append(max(finite, key=lambda g: (scores[g], -g)) if finite else len(heads.c_grid) // 2)
    every_head = heads.decision(source)  # ONE pass over the rows scores every (lag, C) head: [rows, lags, grid]
    decisions = every_head[:, np.arange(len(lags)), chosen]
    return chosen, decisions, heads


def _margins(lag, y, y_onset, scores, val, test) -> list[tuple]:
    """Per-seed point margins: probe AUROC minus each baseline's on the test rows, per target, and minus
    the best baseline chosen on validation AUROC (``chosen`` names it; its interval across seeds uses
    each seed's own choice).

    AUROC margins only (PR-AUC depends on each target's prevalence; AUROC margins compare across lags).
    """
    baselines = [name for name in scores if name != PROBE]
    rows = []
    for target in TARGETS:
        label = y if target == "span" else y_onset
        keep = test if target == "span" else test & (y_onset | ~y)
        chosen_on = val if target == "span" else val & (y_onset | ~y)
        val_auroc = {name: auroc(label[chosen_on], scores[name][chosen_on]) for name in baselines}
        best = max(baselines, key=lambda name: np.nan_to_num(val_auroc[name], nan=-1.0))
        probe = auroc(label[keep], scores[PROBE][keep])
        margin = {name: probe - auroc(label[keep], scores[name][keep]) for name in baselines}
        rows += [(lag, target, name, "auroc", margin[name], name) for name in baselines]
        rows.append((lag, target, "best_baseline", "auroc", margin[best], best))
    return rows


def _test_rows(lag, test, groups, units, y, y_onset, scores) -> pd.DataFrame:
    """The test rows of one lag with their chain, problem unit, both labels and every scorer's score
    (NaN for a baseline that does not apply at this lag): what the across-seed interval resamples."""
    frame = pd.DataFrame({"lag": np.int64(lag), "chain_id": groups[test], "unit_id": units[test].astype(str),
                          "span": y[test], "onset": y_onset[test]})
    for name in SCORERS:
        frame[name] = scores[name][test] if name in scores else np.nan
    return frame[SCORE_COLUMNS]
