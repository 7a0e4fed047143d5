"""Tripwires that cannot flake: each one passes on sound data by construction and names the fault.

Why this design (the pilot's memorisation check failed 11 of 26 runs because MLP early stopping
held out 10% of the rows and restored the best-validation weights, so it could never memorise):
- memorisation is closed-form minimum-norm least squares: no randomness, guaranteed capacity when
  the rows are linearly independent, so a failure is a data fault (duplicates, constants, NaN);
- the random-label checks compare against a permutation null calibrated by the exact distribution
  of a random ranking, not a fixed margin that is wrong for some prevalences;
- planted signal checks the whole train/evaluate path can find a feature that IS the label.
Every tripwire returns a ``TripwireResult``; ``run_tripwires`` evaluates all of them and turns an
exception into a failed result, so one broken check never hides another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .config import ProbeConfig
from .metrics import auroc, pr_auc, pr_auc_of_reassignments
from .splits import rows_split
from .suite import (
    ProbeSuiteResult,
    labelled_inputs,
    resolve_split,
    run_probe_suite,
    run_probe_suite_relabelled,
)

OK = "ok"
MAX_NAMED = 10  # how many offending items a detail string names
NULL_BASELINES = ("position_baseline", "text_baseline")


@dataclass(frozen=True)
class TripwireResult:
    """Outcome of one tripwire: ``reason_code`` is ``"ok"`` when it passed, else a stable fault code."""

    name: str
    passed: bool
    reason_code: str
    metrics: dict = field(default_factory=dict)
    detail: str = ""

    def as_row(self, scope: str) -> dict:
        """Row of the tripwires table (ARCHITECTURE.md): tripwire, scope, passed, reason_code, detail."""
        return {
            "tripwire": self.name,
            "scope": scope,
            "passed": self.passed,
            "reason_code": self.reason_code,
            "detail": self.detail,
        }


def _passed(name: str, metrics: dict | None = None, detail: str = "") -> TripwireResult:
    return TripwireResult(name, True, OK, metrics or {}, detail)


def _failed(name: str, reason: str, detail: str, metrics: dict | None = None) -> TripwireResult:
    return TripwireResult(name, False, reason, metrics or {}, detail)


# --- data integrity --------------------------------------------------------------------------
# NaN/inf, constant and duplicated activations are activation checks (defs/activations/checks.py),
# evaluated on every stored partition; they are not repeated here.


def misaligned_rows(frame: pd.DataFrame, index: pd.DataFrame, expected_sha1: pd.DataFrame) -> TripwireResult:
    """Each probe row's sentence is the text its activation row was computed from.

    ``index``: the activation partition's own index rows for this slice, in probe row order, with
    the ``text_sha1`` the extractor recorded for each row. ``expected_sha1``: ``trace_key, chunk_idx,
    text_sha1`` recomputed from the stored trace texts and sentence spans, read independently of the
    join. A row passes when its keys equal the index row's keys AND the text hash the extractor saw
    equals the hash of the sentence the labels mean. Catches keys assigned to the wrong rows, and
    spans re-made after extraction under the same keys.
    """
    name = "misaligned_rows"
    metrics = {"n_frame_rows": len(frame), "n_index_rows": len(index)}
    if len(frame) != len(index):
        return _failed(name, "misaligned", f"{len(frame)} label rows vs {len(index)} index rows", metrics)
    if "text_sha1" not in index:
        return _failed(name, "no_text_hash", "the activation index has no text_sha1 column (extracted by an older "
                                             "version): re-materialise sentence_activations", metrics)
    keys = ["trace_key", "chunk_idx"]
    same_keys = (frame["trace_key"].astype(str).to_numpy() == index["trace_key"].astype(str).to_numpy()) & (
        frame["chunk_idx"].to_numpy(dtype=np.int64) == index["chunk_idx"].to_numpy(dtype=np.int64))
    expected = frame[keys].merge(expected_sha1[[*keys, "text_sha1"]], on=keys, how="left")["text_sha1"]
    same_text = expected.astype(str).to_numpy() == index["text_sha1"].astype(str).to_numpy()
    wrong = np.flatnonzero(~(same_keys & same_text))
    metrics.update({"n_misaligned_rows": int(wrong.size), "n_key_mismatches": int((~same_keys).sum()),
                    "n_text_mismatches": int((~same_text).sum())})
    if wrong.size:
        examples = [f"row {i}: label {frame['trace_key'].iloc[i]}#{frame['chunk_idx'].iloc[i]} vs activation "
                    f"{index['trace_key'].iloc[i]}#{index['chunk_idx'].iloc[i]}"
                    + ("" if same_text[i] else " (different sentence text)") for i in wrong[:3]]
        return _failed(name, "misaligned", f"{wrong.size} rows differ; " + "; ".join(examples), metrics)
    return _passed(name, metrics)


def split_leakage(assignments: pd.DataFrame) -> TripwireResult:
    """No problem in two splits (or folds) of the split a seed's probes actually used.

    ``assignments``: one row per recorded prediction group with ``seed, scope, problem_id,
    problem_key, split`` where ``problem_key`` identifies the problem independently of its id (a
    hash of the problem statement). Leakage is a problem KEY in two splits within one seed: the
    same problem filed under two ids (a duplicate in the dataset, or a correct and an incorrect
    trace whose ids disagree), or splits that differ between slices of one seed.
    """
    name = "split_leakage"
    needed = {"seed", "problem_id", "problem_key", "split"}
    if assignments.empty or not needed <= set(assignments.columns):
        return _failed(name, "no_recorded_split", f"no recorded probe splits with columns {sorted(needed)}")
    distinct = assignments.drop_duplicates(["seed", "problem_key", "split", "problem_id"])
    n_splits = distinct.groupby(["seed", "problem_key"])["split"].nunique()
    leaking = n_splits[n_splits > 1]
    metrics = {"n_seeds": int(assignments["seed"].nunique()), "n_problems": int(assignments["problem_key"].nunique()),
               "n_leaking": int(leaking.size)}
    if leaking.size:
        named = []
        for (seed, key) in leaking.index[:MAX_NAMED]:
            rows = distinct[(distinct["seed"] == seed) & (distinct["problem_key"] == key)]
            where = ", ".join(f"problem {r.problem_id} in {r.split}" for r in rows.itertuples())
            named.append(f"seed {seed}: problem text {str(key)[:10]} ({where})")
        return _failed(name, "problem_leak", f"{leaking.size} problem(s) in several splits: " + "; ".join(named),
                       metrics)
    return _passed(name, metrics)


# --- learning checks -------------------------------------------------------------------------


def trace_rows_independent(
    frame: pd.DataFrame, X: np.ndarray, seed: int = 0, config: ProbeConfig | None = None
) -> TripwireResult:
    """The rows of one training trace are linearly independent, so a linear probe can memorise them.

    An honest name for what the seeds called "memorisation": with at most dims + 1 rows per trace
    it is a rank check, and closed-form least squares interpolating the labels is its proof. What
    makes it fail is a fault of the activations the row-wise activation checks cannot see: a layer
    collapsed onto a few directions (the wrong tensor hooked, a projection bug), duplicated rows,
    constant columns.

    Trace choice (deterministic): among training traces with both classes, those with at most
    dims + 1 sentences (so n rows can be linearly independent, intercept included), the one with the
    most sentences, ties by trace key. If every trace is longer than that, the shortest one is cut
    to dims + 1 rows keeping its positives. With linearly independent rows, minimum-norm least
    squares on [standardised features, 1] fits every label exactly, so ranking by the decision
    values is perfect; anything else is a data fault with a reason code.
    """
    name = "trace_rows_independent"
    config = config or ProbeConfig()
    X = np.asarray(X)
    if not np.isfinite(X).all():
        return _failed(name, "non_finite", "activations hold NaN/inf")
    inputs, labels = labelled_inputs(frame, X)
    train_rows = rows_split(inputs.frame["problem_id"], resolve_split(inputs.frame, seed, config)) == "train"
    rows = _memorisation_rows(inputs.frame, labels, train_rows, X.shape[1])
    if rows is None:
        return _failed(name, "single_class", "no training trace holds both anchors and non-anchors")
    trace = str(inputs.frame["trace_key"].iloc[rows[0]])
    features, y = inputs.X[rows].astype(np.float64), labels[rows]
    metrics = {
        "trace_key": trace,
        "n_rows": int(rows.size),
        "n_positive": int(y.sum()),
        "dims": int(X.shape[1]),
    }
    spread = features.std(axis=0)
    varying = spread > 0
    if not varying.any():
        return _failed(
            name, "constant_features", f"all {X.shape[1]} columns are constant on {trace}", metrics
        )
    standardised = (features[:, varying] - features[:, varying].mean(axis=0)) / spread[varying]
    design = np.hstack([standardised, np.ones((rows.size, 1))])
    # The rank tolerance follows the precision the activations were STORED in: float32 rows of a
    # rank-8 layer come back "full rank" at float64's default tolerance, from rounding noise alone.
    eps = np.finfo(X.dtype).eps if np.issubdtype(X.dtype, np.floating) else np.finfo(np.float64).eps
    singular = np.linalg.svd(design, compute_uv=False)
    rank = int(np.sum(singular > singular.max() * max(design.shape) * eps))
    metrics["rank"] = rank
    if rank < rows.size:
        pairs = duplicate_row_pairs(features)
        culprit = (
            f"duplicate rows {_name_pairs(inputs.frame.iloc[rows].reset_index(drop=True), pairs)}"
            if pairs
            else ("no exact duplicates: rows are linearly dependent")
        )
        return _failed(
            name, "rank_deficient", f"rank {rank} < {rows.size} rows on {trace}; {culprit}", metrics
        )
    weights, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    decision = design @ weights
    metrics.update({"pr_auc": pr_auc(y, decision), "auroc": auroc(y, decision)})
    if metrics["pr_auc"] >= config.memorise_min_pr_auc and metrics["auroc"] == 1.0:
        return _passed(name, metrics, f"memorised {trace} ({rows.size} rows)")
    return _failed(
        name,
        "cannot_memorise",
        f"PR-AUC {metrics['pr_auc']:.4f}, AUROC {metrics['auroc']:.4f} on {trace}",
        metrics,
    )


def random_label_null(
    frame: pd.DataFrame, X: np.ndarray, seed: int, config: ProbeConfig | None = None,
    real_run: ProbeSuiteResult | None = None,
) -> list[TripwireResult]:
    """Two checks from one permutation null: ``permutation_null`` and ``signal_beats_null``.

    Labels are permuted within position bins of each problem (``null_position_bins`` bins of
    relative position): prevalence, problem structure AND the position signal are kept, only the
    link between content and label is destroyed. So the null probe learns whatever position buys
    (activations encode position), and beating it means signal beyond position. The linear probe is
    trained through the normal suite path each time (with the L2 strength the real-label run chose; all
    permutations as heads of one engine call, ``run_probe_suite_relabelled``).
    If nothing leaks, each null probe's test labels are a within-(problem, bin) permutation
    independent of its scores, so its PR-AUC is distributed exactly like PR-AUC(labels, scores
    shuffled within the same groups); that reference is simulated (``null_reference_draws`` per run)
    for the actual scores: the bands are calibrated, not hand-tuned.
    - permutation_null passes iff the mean null PR-AUC <= reference mean + max(sigmas x SE, floor),
      or <= the simulated 99.99% quantile of the mean of one reference draw per permutation if that
      is higher: higher means random labels look learnable (leakage between splits, labels in the
      features). The simulated quantile matters on tiny data only: with one problem per fold and a
      handful of anchors a single null run can reach PR-AUC 0.8 by chance, the mean of K is skewed,
      and the normal band alone false-redded 1 of 40 sound slices of 3-4 problems.
    - signal_beats_null passes iff the real-label probe beats the ``null_quantile`` of both the
      permutation scores and the pooled reference. Its metrics carry the real run's margins over the
      position and text baselines (same split), so the finding reads "beyond position and text".
    ``real_run``: this slice's real-label run for ``seed`` with the linear probe and both baselines, when
    the caller already has it (a study that runs them anyway); by default it is run here.
    """
    names = ("permutation_null", "signal_beats_null")
    config = config or ProbeConfig()
    if not np.isfinite(np.asarray(X)).all():
        return [_failed(name, "non_finite", "activations hold NaN/inf") for name in names]
    # The study's own scheme (auto: leave-problems-out below ~67 problems). A forced holdout left ONE test
    # problem on 6 real problems: a null and a signal check with one unit behind them. Leave-problems-out
    # scores every problem once; the cost is one fit per fold and permutation (small data only: large
    # datasets are holdout under ``auto``).
    linear = _linear_only(config)
    if real_run is None:
        real_run = run_probe_suite(frame, X, seed, replace(linear, probes=("linear_probe", *NULL_BASELINES)))
    missing = {"linear_probe", *NULL_BASELINES} - set(real_run.metrics["probe"])
    if missing:
        raise ValueError(f"the real-label run lacks {sorted(missing)}: the null compares against all of them")
    real = real_run.metric("linear_probe", "pr_auc")
    # Null probes re-run the real run's exact models: its split or folds and, per fold, the L2 strength it
    # chose on validation. A null that used one C for every fold would be a weaker procedure than the real
    # run's per-fold choice (a bias towards "signal"); re-choosing C per permutation would cost
    # len(grid) + 1 fits per fold instead of one.
    chosen = {(row.probe, str(row.fold)): float(row.value) for row in real_run.selection.itertuples()
              if row.probe == "linear_probe"}
    rng = np.random.default_rng([seed, 7919])
    groups = position_groups(frame, config.null_position_bins)
    # Every permutation's probes are heads of one engine call. The random stream stays the one a loop of
    # (permute, fit, simulate its reference) draws: each reference's uniforms are skipped here and replayed
    # from the saved generator state once the fits exist (their count is the evaluated rows x draws).
    n_evaluated = int((real_run.predictions.loc[real_run.predictions["probe"] == "linear_probe", "split"]
                       == "test").sum())
    permuted_frames, reference_states = [], []
    for _ in range(config.null_permutations):
        permuted_frames.append(_permute_within_groups(frame, groups, rng))
        reference_states.append(rng.bit_generator.state)
        rng.random((n_evaluated, config.null_reference_draws))
    runs = run_probe_suite_relabelled(permuted_frames, X, seed, linear, real_run.split, chosen)
    null_scores, reference_means, reference_vars, reference_draws = [], [], [], []
    for permuted, run, state in zip(permuted_frames, runs, reference_states, strict=True):
        null_scores.append(run.metric("linear_probe", "pr_auc"))
        labels, scores, evaluated_groups, folds, problems = _evaluated_rows(permuted, run, groups)
        if labels.size != n_evaluated:
            raise RuntimeError(f"a null run evaluated {labels.size} rows, the real run {n_evaluated}")
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        reference = _within_group_reference(labels, scores, evaluated_groups, config.null_reference_draws, replay,
                                            folds, problems)
        reference_means.append(reference.mean())
        reference_vars.append(reference.var())
        reference_draws.append(reference)
    null_scores = np.array(null_scores)
    k = len(null_scores)
    expected = float(np.mean(reference_means))
    standard_error = float(np.sqrt(np.sum(reference_vars)) / k)
    band = max(expected + max(config.null_band_sigmas * standard_error, config.null_band_floor),
               _simulated_mean_quantile(reference_draws, NULL_MEAN_QUANTILE, rng))
    pooled = np.concatenate(reference_draws)
    threshold = float(
        max(np.quantile(null_scores, config.null_quantile), np.quantile(pooled, config.null_quantile))
    )
    metrics = {
        "real_pr_auc": real,
        "null_mean_pr_auc": float(null_scores.mean()),
        "null_scores": null_scores.round(6).tolist(),
        "reference_mean_pr_auc": expected,
        "null_band_upper": float(band),
        "signal_threshold": threshold,
        "position_bins": config.null_position_bins,
        **{f"margin_over_{baseline}": real - real_run.metric(baseline, "pr_auc") for baseline in NULL_BASELINES},
    }
    results = []
    if null_scores.mean() <= band:
        results.append(_passed(names[0], metrics))
    else:
        detail = f"probes on permuted labels reach PR-AUC {null_scores.mean():.3f} > band {band:.3f}"
        results.append(_failed(names[0], "null_learnable", detail, metrics))
    margins = ", ".join(f"{metrics[f'margin_over_{b}']:+.3f} over {b}" for b in NULL_BASELINES)
    if real > threshold:
        results.append(_passed(names[1], metrics, f"real PR-AUC {real:.3f} > null {threshold:.3f}; {margins}"))
    else:
        detail = (f"real-label PR-AUC {real:.3f} <= the {config.null_quantile:.0%} quantile {threshold:.3f} of a null "
                  f"that keeps position; {margins}")
        results.append(_failed(names[1], "no_signal_beyond_position", detail, metrics))
    return results


def planted_signal(
    frame: pd.DataFrame, X: np.ndarray, seed: int, config: ProbeConfig | None = None
) -> TripwireResult:
    """Append features = label + N(0, sd^2) and require the normal suite path to recover them.

    Fails when labels and predictions drift apart anywhere between the frame and the metrics (row
    order, filtering, split bookkeeping) -- faults the activations themselves cannot reveal.

    Why ceil(sqrt(dims)) planted columns, not one: with thousands of dimensions and a few hundred
    training rows, the L2 probe spreads its weight over the noise dimensions, whose summed
    contribution grows like sqrt(dims / rows); one planted column then lost to them on sound data
    (PR-AUC 0.89-0.95 at 5120 dims: a false red). sqrt(dims) independent noisy copies give the
    planted direction a weight that grows at the same rate, so recovery no longer depends on width.
    """
    name = "planted_signal"
    config = config or ProbeConfig()
    X = np.asarray(X)
    if not np.isfinite(X).all():
        return _failed(name, "non_finite", "activations hold NaN/inf")
    rng = np.random.default_rng([seed, 104729])
    label = frame["anchor"].to_numpy(dtype=np.float64)
    n_planted = planted_columns(X.shape[1])
    planted = label[:, None] + rng.normal(0.0, config.planted_noise_sd, size=(label.size, n_planted))
    augmented = np.hstack([X.astype(np.float32), planted.astype(np.float32)])
    recovered = run_probe_suite(frame, augmented, seed, _linear_only(config)).metric("linear_probe", "pr_auc")
    metrics = {
        "pr_auc": recovered,
        "threshold": config.planted_min_pr_auc,
        "noise_sd": config.planted_noise_sd,
        "n_planted_columns": n_planted,
    }
    if recovered >= config.planted_min_pr_auc:
        return _passed(name, metrics)
    return _failed(
        name,
        "planted_signal_not_recovered",
        f"PR-AUC {recovered:.3f} < {config.planted_min_pr_auc} on {n_planted} features equal to label + noise",
        metrics,
    )


def planted_columns(dims: int) -> int:
    """How many label + noise columns ``planted_signal`` appends: ceil(sqrt(dims))."""
    return int(np.ceil(np.sqrt(max(int(dims), 1))))


SLICE_TRIPWIRES = ("misaligned_rows", "trace_rows_independent", "permutation_null", "signal_beats_null",
                   "planted_signal")


def run_tripwires(
    frame: pd.DataFrame,
    X: np.ndarray,
    seed: int,
    config: ProbeConfig | None = None,
    index: pd.DataFrame | None = None,
    expected_sha1: pd.DataFrame | None = None,
) -> list[TripwireResult]:
    """Every slice tripwire: row alignment (with ``index`` and ``expected_sha1``), trace rank, the
    permutation null and the planted signal.

    Each check runs even if another failed or raised (an exception becomes a failed result with
    reason ``error``), so the report always shows every fault at once.
    """
    config = config or ProbeConfig()
    results = []
    if index is not None and expected_sha1 is not None:
        results.append(_guarded("misaligned_rows", lambda: misaligned_rows(frame, index, expected_sha1)))
    results.append(_guarded("trace_rows_independent", lambda: trace_rows_independent(frame, X, seed, config)))
    results += _guarded_many(
        ("permutation_null", "signal_beats_null"), lambda: random_label_null(frame, X, seed, config)
    )
    results.append(_guarded("planted_signal", lambda: planted_signal(frame, X, seed, config)))
    return results


# --- helpers ---------------------------------------------------------------------------------


def duplicate_row_pairs(X: np.ndarray) -> list[tuple[int, int]]:
    """(first, other) row positions of exactly identical rows, each duplicate paired with its first."""
    X = np.ascontiguousarray(X)
    if X.shape[0] < 2:
        return []
    as_bytes = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(
        as_bytes, return_index=True, return_inverse=True, return_counts=True
    )
    return [
        (int(first[inverse[i]]), int(i))
        for i in np.flatnonzero(counts[inverse] > 1)
        if first[inverse[i]] != i
    ]


def _name_pairs(frame: pd.DataFrame, pairs: list[tuple[int, int]]) -> str:
    keys = (frame["trace_key"].astype(str) + "#" + frame["chunk_idx"].astype(str)).to_numpy()
    named = ", ".join(f"({keys[i]}, {keys[j]})" for i, j in pairs[:MAX_NAMED])
    return named + (f" and {len(pairs) - MAX_NAMED} more" if len(pairs) > MAX_NAMED else "")


def _memorisation_rows(
    frame: pd.DataFrame, labels: np.ndarray, train_rows: np.ndarray, dims: int
) -> np.ndarray | None:
    traces = frame["trace_key"].astype(str).to_numpy()
    candidates = []
    for trace in sorted(set(traces[train_rows])):
        rows = np.flatnonzero(train_rows & (traces == trace))
        if 0 < labels[rows].sum() < rows.size:
            candidates.append((trace, rows))
    if not candidates:
        return None
    capacity = dims + 1
    fitting = [(trace, rows) for trace, rows in candidates if rows.size <= capacity]
    if fitting:
        return min(fitting, key=lambda item: (-item[1].size, item[0]))[1]
    _, rows = min(candidates, key=lambda item: (item[1].size, item[0]))
    positives, negatives = rows[labels[rows] == 1], rows[labels[rows] == 0]
    keep_positives = positives[: max(1, capacity - 1)]
    return np.sort(np.concatenate([keep_positives, negatives[: capacity - keep_positives.size]]))


def position_groups(frame: pd.DataFrame, n_bins: int) -> np.ndarray:
    """``problem_id#bin`` of each row: ``n_bins`` equal-width bins of relative position per problem."""
    position = frame["rel_position"].to_numpy(dtype=np.float64)
    bins = np.clip((position * n_bins).astype(int), 0, n_bins - 1)
    return (frame["problem_id"].astype(str) + "#" + pd.Series(bins, index=frame.index).astype(str)).to_numpy()


def _permute_within_groups(frame: pd.DataFrame, groups: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Copy of the frame with labelled anchors shuffled inside each group (problem x position bin)."""
    permuted = frame.copy()
    labelled = (
        frame["in_label_set"].to_numpy(dtype=bool) if "in_label_set" in frame else np.ones(len(frame), bool)
    )
    anchors = frame["anchor"].to_numpy().copy()
    for group in sorted(set(groups[labelled])):
        rows = np.flatnonzero(labelled & (groups == group))
        anchors[rows] = anchors[rng.permutation(rows)]
    permuted["anchor"] = anchors
    return permuted


def _evaluated_rows(frame: pd.DataFrame, run, groups: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, linear-probe scores, groups, folds, problems) of the rows a suite run evaluated."""
    keep = frame["in_label_set"].to_numpy(dtype=bool) if "in_label_set" in frame else np.ones(len(frame), bool)
    labels = frame.loc[keep, "anchor"].to_numpy(dtype=int)
    predictions = run.predictions[run.predictions["probe"] == "linear_probe"]
    scores = predictions["score"].to_numpy()
    evaluated = (predictions["split"] == "test").to_numpy()
    return (labels[evaluated], scores[evaluated], groups[keep][evaluated],
            predictions["fold"].astype(str).to_numpy()[evaluated],
            predictions["problem_id"].astype(str).to_numpy()[evaluated])


NULL_MEAN_QUANTILE = 0.9999  # permutation_null's simulated band: about the normal band's 4 sigmas, one-sided


def _simulated_mean_quantile(reference_draws: list[np.ndarray], quantile: float, rng: np.random.Generator,
                             n_samples: int = 100_000) -> float:
    """The ``quantile`` of the mean of one reference draw per permutation, by simulation: the null
    distribution of the statistic ``permutation_null`` compares (the mean of K null PR-AUCs), without
    assuming it is normal."""
    finite = [draws[np.isfinite(draws)] for draws in reference_draws]
    if not finite or any(draws.size == 0 for draws in finite):
        return float("-inf")
    means = np.mean([draws[rng.integers(0, draws.size, n_samples)] for draws in finite], axis=0)
    return float(np.quantile(means, quantile))


def _within_group_reference(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, draws: int, rng: np.random.Generator,
    folds: np.ndarray | None = None, problems: np.ndarray | None = None,
) -> np.ndarray:
    """PR-AUC of ``labels`` against ``scores`` shuffled within each group, ``draws`` times.

    Shuffling scores within groups is the same in distribution as shuffling labels within groups,
    and lets one sort score every draw (``pr_auc_of_reassignments``: the sorted score values are the
    same in every draw, only the rows they land on change). With ``folds`` the PR-AUC is the suite's:
    within each fold, averaged over folds weighted by their problems (groups lie inside one problem,
    so a shuffle never crosses folds).
    """
    _, codes = np.unique(groups, return_inverse=True)
    canonical = np.argsort(codes, kind="stable")  # rows grouped by group, in row order
    shuffled_order = np.argsort(codes[:, None] + rng.random((codes.size, draws)), axis=0)
    # row canonical[i] receives the score of row shuffled_order[i]: invert to "row j's score goes to row r"
    receivers = np.empty_like(shuffled_order)
    np.put_along_axis(receivers, shuffled_order, np.broadcast_to(canonical[:, None], shuffled_order.shape), axis=0)
    if folds is None or len(set(folds)) <= 1:
        return pr_auc_of_reassignments(labels, scores, receivers)
    values, weights = [], []
    for fold in sorted(set(folds)):
        rows = np.flatnonzero(folds == fold)
        value = pr_auc_of_reassignments(labels, scores[rows], receivers[rows])
        if np.all(np.isfinite(value)):
            values.append(value)
            weights.append(len(set(problems[rows])))
    return np.average(np.vstack(values), axis=0, weights=weights) if values else np.full(draws, np.nan)


def _linear_only(config: ProbeConfig) -> ProbeConfig:
    """The same linear-probe path as the suite, without the other probes or the bootstrap."""
    return replace(config, probes=("linear_probe",), bootstrap_resamples=0)


def _guarded(name: str, check: Callable[[], TripwireResult]) -> TripwireResult:
    try:
        return check()
    except Exception as error:  # a crashing check is a failed check, never a hidden one
        return _failed(name, "error", f"{type(error).__name__}: {error}")


def _guarded_many(names: tuple[str, ...], check: Callable[[], list[TripwireResult]]) -> list[TripwireResult]:
    try:
        return check()
    except Exception as error:
        return [_failed(name, "error", f"{type(error).__name__}: {error}") for name in names]
