"""Lag probes on one (model, layer) slice for one seed: a logistic probe per lag, its baselines,
metrics on test chains and margins with a bootstrap interval over test chains.

Science choices (what the seed's public version got wrong, done right here):
- splits by chain (``probing.splits.problem_level_split`` with the chain as the unit), the seed picks
  the split; no chain is in two splits;
- the L2 strength is chosen on the validation chains (``probing.models.select_and_fit``, by val
  PR-AUC, no refit on train + val so that the validation scores used for the threshold are honest);
  the F1 threshold of every scorer is the one maximising F1 on validation; every reported number is
  on the test chains;
- class weighting ``balanced`` (the probing package's logistic probe);
- one probe per lag is trained on span membership at t + k (``in_backtracking``); its onset score
  is the same probe evaluated only on rows whose target is an onset (positive) or outside every
  backtracking section (negative): "does it see the start coming", not "is it inside a section";
- baselines beside every probe (``baselines.py``), margins over each with a paired bootstrap over
  test chains (``probing.bootstrap``), and over the best baseline chosen on validation AUROC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from ta_platform.probing.bootstrap import bootstrap_margins
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.metrics import auroc, pr_auc
from ta_platform.probing.models import probe_specs, select_and_fit
from ta_platform.probing.splits import problem_level_split, rows_split

from .baselines import position_bins, rate_by_key
from .lags import DEFAULT_LAGS, lag_pairs

PROBE = "linear_probe"
METRIC_COLUMNS = ["lag", "probe", "metric", "value"]
MARGIN_COLUMNS = ["lag", "target", "baseline", "metric", "margin", "ci_low", "ci_high", "n_valid_resamples"]
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
    bootstrap_resamples: int = 1000
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
    margins: pd.DataFrame  # MARGIN_COLUMNS
    split: dict[str, str]  # chain id -> train / val / test
    weights: dict[int, dict[str, np.ndarray]]  # lag -> probe arrays


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict positive when score >= it) maximising F1; +inf without positives."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return float("inf")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores, sorted_labels = np.asarray(scores)[order], labels[order]
    last_of_run = np.r_[np.diff(sorted_scores) != 0, True]
    tp = np.cumsum(sorted_labels)[last_of_run]
    predicted = (np.arange(labels.size) + 1)[last_of_run]
    f1 = 2 * tp / (predicted + labels.sum())
    return float(sorted_scores[last_of_run][int(np.argmax(f1))])


def f1_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((labels & predicted).sum())
    denominator = int(labels.sum() + predicted.sum())
    return 2 * tp / denominator if denominator else float("nan")


def chain_split(chain_ids: Sequence[str], seed: int, config: LagConfig) -> dict[str, str]:
    return problem_level_split(chain_ids, seed, config.fractions)


def run_lag_slice(tokens: pd.DataFrame, X: np.ndarray, seed: int, config: LagConfig | None = None) -> SliceResult:
    """Every lag of one slice. ``tokens`` (``token_labels`` rows, contiguous per chain) align with ``X``."""
    config = config or LagConfig()
    X = np.asarray(X)
    if X.shape[0] != len(tokens):
        raise ValueError(f"{X.shape[0]} activation rows for {len(tokens)} token rows")
    chains = tokens["chain_id"].astype(str).to_numpy()
    split = chain_split(chains, seed, config)
    row_split = rows_split(chains, split)
    in_bt = tokens["in_backtracking"].to_numpy(dtype=bool)
    onset = tokens["backtrack_onset"].to_numpy(dtype=bool)
    token_id = tokens["token_id"].to_numpy()
    bins = position_bins(tokens["rel_position"].to_numpy(), config.position_bins)
    probe_config = config.probe_config()
    spec = probe_specs(probe_config)["linear_probe"]
    lags = sorted(set(config.lags), key=lambda k: (k != 0, k))  # lag 0 first: its scores are a baseline
    lag0_scores = None
    metrics, margins, weights = [], [], {}
    for lag in lags:
        src, tgt = lag_pairs(tokens, lag)
        part = row_split[src]
        y, y_onset, groups = in_bt[tgt], onset[tgt], chains[src]
        train, val, test = (part == "train"), (part == "val"), (part == "test")
        if not (y[train].any() and y[val].any() and y[test].any()):
            raise ValueError(f"lag {lag}: a split has no backtracking token (train {int(y[train].sum())}, "
                             f"val {int(y[val].sum())}, test {int(y[test].sum())}); too few chains")
        inputs = ProbeInputs(pd.DataFrame(index=range(src.size)), X[src])
        selection = select_and_fit(spec, inputs.take(train), y[train].astype(int), inputs.take(val),
                                   y[val].astype(int), seed, probe_config)
        scores = {PROBE: selection.probe.predict_score(inputs)}
        weights[lag] = selection.probe.weights()
        if lag == 0:
            lag0_scores = selection.probe.predict_score(ProbeInputs(pd.DataFrame(index=range(len(X))), X))
        scores["token_identity"] = rate_by_key(token_id[src][train], y[train], token_id[src], config.token_prior)
        scores["position"] = rate_by_key(bins[src][train], y[train], bins[src], config.token_prior)
        if lag != 0:
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
        metrics += [(lag, PROBE, "selected_C", selection.value),
                    (lag, "labels", "prevalence", float(y[test].mean())),
                    (lag, "labels", "n_test_rows", float(test.sum())),
                    (lag, "labels", "n_test_onsets", float(y_onset[test].sum())),
                    (lag, "labels", "n_test_chains", float(len(set(groups[test]))))]
        margins += _margins(lag, y, y_onset, scores, groups, val, test, seed, config)
    return SliceResult(pd.DataFrame(metrics, columns=METRIC_COLUMNS), pd.DataFrame(margins, columns=MARGIN_COLUMNS),
                       split, weights)


def _margins(lag, y, y_onset, scores, groups, val, test, seed, config) -> list[tuple]:
    """Probe minus each baseline (and minus the best baseline on val), per target, over test chains.

    AUROC margins only (PR-AUC depends on each target's prevalence; AUROC margins compare across lags).
    ``bootstrap_margins`` scores several probes against one baseline on the same chain draws; here
    the probe is passed as its "baseline" and the baselines as its "probes" (one call scores them all
    on the same draws), so each returned margin is baseline - probe and is negated back.
    """
    baselines = [name for name in scores if name != PROBE]
    rows = []
    for target in TARGETS:
        label = y if target == "span" else y_onset
        keep = test if target == "span" else test & (y_onset | ~y)
        chosen_on = val if target == "span" else val & (y_onset | ~y)
        val_auroc = {name: auroc(label[chosen_on], scores[name][chosen_on]) for name in baselines}
        best = max(baselines, key=lambda name: np.nan_to_num(val_auroc[name], nan=-1.0))
        intervals = bootstrap_margins(label[keep], {name: scores[name][keep] for name in baselines},
                                      scores[PROBE][keep], groups[keep], metrics=("auroc",),
                                      n_resamples=config.bootstrap_resamples, seed=seed, level=config.ci_level)
        for interval in intervals:
            for name in (interval.probe, "best_baseline") if interval.probe == best else (interval.probe,):
                rows.append((lag, target, name, interval.metric, -interval.margin, -interval.ci_high,
                             -interval.ci_low, interval.n_valid_resamples))
    return rows


def without_bootstrap(config: LagConfig) -> LagConfig:
    """The same config with no bootstrap (tripwires and quick checks)."""
    return replace(config, bootstrap_resamples=0)
