"""Lag probes on one (model, layer) slice for one seed: a logistic probe per lag, its baselines,
metrics on test chains, the test rows' scores and the per-seed point margins.

Science choices (what the seed's public version got wrong, done right here):
- the split is the seed's ONE dataset-wide assignment by chain problem (``splits.DatasetSplit``,
  recorded once and read by every slice and model); no problem is in two splits;
- the L2 strength is chosen on the validation chains (``probing.models.select_and_fit``, by val
  PR-AUC, no refit on train + val so that the validation scores used for the threshold are honest);
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
from ta_platform.probing.features import ProbeInputs
from ta_platform.probing.metrics import auroc, pr_auc
from ta_platform.probing.models import probe_specs, select_and_fit
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


def run_lag_slice(tokens: pd.DataFrame, X: np.ndarray, split: DatasetSplit,
                  config: LagConfig | None = None) -> SliceResult:
    """Every lag of one slice. ``tokens`` (``token_labels`` rows, contiguous per chain) align with ``X``;
    ``split`` is the seed's recorded dataset-wide split (its seed also seeds the probe fits)."""
    config = config or LagConfig()
    seed = split.seed
    X = np.asarray(X)
    if X.shape[0] != len(tokens):
        raise ValueError(f"{X.shape[0]} activation rows for {len(tokens)} token rows")
    chains = tokens["chain_id"].astype(str).to_numpy()
    row_split = split.splits_of(chains)
    row_unit = split.units_of(chains)
    in_bt = tokens["in_backtracking"].to_numpy(dtype=bool)
    onset = tokens["backtrack_onset"].to_numpy(dtype=bool)
    token_id = tokens["token_id"].to_numpy()
    bins = position_bins(tokens["rel_position"].to_numpy(), config.position_bins)
    probe_config = config.probe_config()
    spec = probe_specs(probe_config)["linear_probe"]
    lags = sorted(set(config.lags), key=lambda k: (k != 0, k))  # lag 0 first: its scores are a baseline
    lag0_scores = None
    metrics, margins, weights, test_scores = [], [], {}, []
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
        metrics += [(lag, PROBE, "selected_C", selection.value),
                    (lag, "labels", "prevalence", float(y[test].mean())),
                    (lag, "labels", "n_test_rows", float(test.sum())),
                    (lag, "labels", "n_test_onsets", float(y_onset[test].sum())),
                    (lag, "labels", "n_test_chains", float(len(set(groups[test]))))]
        margins += _margins(lag, y, y_onset, scores, val, test)
        test_scores.append(_test_rows(lag, test, groups, row_unit[src], y, y_onset, scores))
    used = dict(zip(chains, row_split, strict=True))
    return SliceResult(pd.DataFrame(metrics, columns=METRIC_COLUMNS), pd.DataFrame(margins, columns=MARGIN_COLUMNS),
                       used, weights, pd.concat(test_scores, ignore_index=True))


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
