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
from .metrics import auroc, pr_auc, pr_auc_columns
from .splits import rows_split
from .suite import labelled_inputs, resolve_split, run_probe_suite

OK = "ok"
MAX_NAMED = 10  # how many offending items a detail string names


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


def finite_activations(X: np.ndarray) -> TripwireResult:
    """NaN/inf anywhere in the activations (overflowing float16, a failed forward pass)."""
    bad_rows = np.flatnonzero(~np.isfinite(np.asarray(X)).all(axis=1))
    if bad_rows.size:
        return _failed(
            "finite_activations",
            "non_finite",
            f"{bad_rows.size} rows hold NaN/inf, first rows {bad_rows[:MAX_NAMED].tolist()}",
            {"n_non_finite_rows": int(bad_rows.size)},
        )
    return _passed("finite_activations", {"n_non_finite_rows": 0})


def constant_activations(X: np.ndarray) -> TripwireResult:
    """Every column constant over all rows: the extractor wrote a placeholder, not activations."""
    X = np.asarray(X)  # no float64 copy: a partition can be gigabytes
    if X.shape[0] == 0:
        return _failed("constant_activations", "constant_activations", "no activation rows", {"n_rows": 0})
    spread = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
    n_constant = int(np.sum(spread == 0))
    metrics = {"n_constant_columns": n_constant, "n_columns": int(X.shape[1])}
    if n_constant == X.shape[1]:
        return _failed("constant_activations", "constant_activations", "all columns are constant", metrics)
    return _passed("constant_activations", metrics)


def duplicate_embeddings(frame: pd.DataFrame, X: np.ndarray) -> TripwireResult:
    """Identical activation rows for sentences with different text: a pooling or span bug.

    Identical rows for identical text are allowed: the correct and incorrect traces of a problem can
    share a prefix, and a causal model gives the same activations for the same prefix.
    """
    pairs = duplicate_row_pairs(X)
    texts = frame["text"].astype(str).to_numpy()
    bad = [(i, j) for i, j in pairs if texts[i] != texts[j]]
    metrics = {"n_duplicate_pairs": len(pairs), "n_duplicate_pairs_different_text": len(bad)}
    if bad:
        return _failed(
            "duplicate_embeddings",
            "duplicate_embeddings",
            f"{len(bad)} pairs of different sentences share an embedding: {_name_pairs(frame, bad)}",
            metrics,
        )
    return _passed("duplicate_embeddings", metrics)


def split_leakage(frame: pd.DataFrame, split_column: str = "data_split") -> TripwireResult:
    """A problem id in two splits: its correct and incorrect traces would leak train into test."""
    if split_column not in frame:
        return _failed("split_leakage", "no_split_column", f"frame has no {split_column!r} column")
    n_splits = frame.groupby(frame["problem_id"].astype(str))[split_column].nunique()
    leaking = sorted(n_splits[n_splits > 1].index)
    metrics = {"n_leaking_problems": len(leaking), "n_problems": int(n_splits.size)}
    if leaking:
        named = {
            pid: sorted(frame.loc[frame["problem_id"].astype(str) == pid, split_column].unique())
            for pid in leaking[:MAX_NAMED]
        }
        return _failed("split_leakage", "problem_leak", f"problems in several splits: {named}", metrics)
    return _passed("split_leakage", metrics)


def misaligned_rows(frame: pd.DataFrame, index: pd.DataFrame) -> TripwireResult:
    """Activation index keys (trace_key, chunk_idx) must equal the frame's, row for row."""
    metrics = {"n_frame_rows": len(frame), "n_index_rows": len(index)}
    if len(frame) != len(index):
        return _failed(
            "misaligned_rows", "misaligned", f"{len(frame)} label rows vs {len(index)} index rows", metrics
        )
    same = (frame["trace_key"].astype(str).to_numpy() == index["trace_key"].astype(str).to_numpy()) & (
        frame["chunk_idx"].to_numpy(dtype=np.int64) == index["chunk_idx"].to_numpy(dtype=np.int64)
    )
    wrong = np.flatnonzero(~same)
    metrics["n_misaligned_rows"] = int(wrong.size)
    if wrong.size:
        examples = [
            f"row {i}: frame {frame['trace_key'].iloc[i]}#{frame['chunk_idx'].iloc[i]} "
            f"vs index {index['trace_key'].iloc[i]}#{index['chunk_idx'].iloc[i]}"
            for i in wrong[:3]
        ]
        return _failed(
            "misaligned_rows", "misaligned", f"{wrong.size} rows differ; " + "; ".join(examples), metrics
        )
    return _passed("misaligned_rows", metrics)


def data_integrity_tripwires(
    frame: pd.DataFrame, X: np.ndarray, index: pd.DataFrame | None = None, split_column: str = "data_split"
) -> list[TripwireResult]:
    """The cheap checks the release gate runs on every activation partition (no training)."""
    checks: list[tuple[str, Callable[[], TripwireResult]]] = [
        ("finite_activations", lambda: finite_activations(X)),
        ("constant_activations", lambda: constant_activations(X)),
        ("duplicate_embeddings", lambda: duplicate_embeddings(frame, X)),
        ("split_leakage", lambda: split_leakage(frame, split_column)),
    ]
    if index is not None:
        checks.append(("misaligned_rows", lambda: misaligned_rows(frame, index)))
    return [_guarded(name, check) for name, check in checks]


# --- learning checks -------------------------------------------------------------------------


def memorisation(
    frame: pd.DataFrame, X: np.ndarray, seed: int = 0, config: ProbeConfig | None = None
) -> TripwireResult:
    """Closed-form least squares must interpolate the labels of one training trace exactly.

    Trace choice (deterministic): among training traces with both classes, those with at most
    dims + 1 sentences (so n rows can be linearly independent, intercept included), the one with the
    most sentences, ties by trace key. If every trace is longer than that, the shortest one is cut
    to dims + 1 rows keeping its positives. With linearly independent rows, minimum-norm least
    squares on [standardised features, 1] fits every label exactly, so ranking by the decision
    values is perfect; anything else is a data fault with a reason code.
    """
    name = "memorisation"
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
    rank = int(np.linalg.matrix_rank(design))
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
    frame: pd.DataFrame, X: np.ndarray, seed: int, config: ProbeConfig | None = None
) -> list[TripwireResult]:
    """Two checks from one permutation null: ``permutation_null`` and ``signal_beats_null``.

    Labels are permuted within each problem (prevalence and problem structure kept, content link
    destroyed) ``null_permutations`` times, and the linear probe is trained through the normal suite
    path each time (with the L2 strength the real-label run chose). If nothing leaks, each null
    probe's test labels are a within-problem permutation independent of its scores, so its PR-AUC is
    distributed exactly like PR-AUC(labels, scores shuffled within problems). We simulate that
    reference (``null_reference_draws`` per run) for the actual scores, prevalence, test size and
    problem structure: the bands are calibrated, not hand-tuned, and problem-level score offsets
    (activations cluster by problem) cannot fake a failure.
    - permutation_null passes iff the mean null PR-AUC <= reference mean + max(sigmas x SE, floor):
      a higher value means random labels look learnable (leakage between splits, labels in features).
    - signal_beats_null passes iff the real-label probe beats the ``null_quantile`` of both the
      permutation scores and the pooled reference (which stabilises the quantile when K is small).
    """
    names = ("permutation_null", "signal_beats_null")
    config = config or ProbeConfig()
    if not np.isfinite(np.asarray(X)).all():
        return [_failed(name, "non_finite", "activations hold NaN/inf") for name in names]
    linear = _linear_only(config)
    real_run = run_probe_suite(frame, X, seed, linear)
    real = real_run.metric("linear_probe", "pr_auc")
    # Null probes reuse the real run's L2 choice: selection only sees val labels, so it cannot change
    # the null distribution, and skipping it makes each permutation one fit instead of len(grid) + 1.
    chosen_c = real_run.metric("linear_probe", "selected_C")
    null_config = replace(linear, l2_c_grid=(chosen_c,)) if np.isfinite(chosen_c) else linear
    rng = np.random.default_rng([seed, 7919])
    null_scores, reference_means, reference_vars, reference_draws = [], [], [], []
    for _ in range(config.null_permutations):
        permuted = _permute_within_problems(frame, rng)
        run = run_probe_suite(permuted, X, seed, null_config)
        null_scores.append(run.metric("linear_probe", "pr_auc"))
        labels, scores, groups = _evaluated_rows(permuted, X, run, seed, config)
        reference = _within_problem_reference(labels, scores, groups, config.null_reference_draws, rng)
        reference_means.append(reference.mean())
        reference_vars.append(reference.var())
        reference_draws.append(reference)
    null_scores = np.array(null_scores)
    k = len(null_scores)
    expected = float(np.mean(reference_means))
    standard_error = float(np.sqrt(np.sum(reference_vars)) / k)
    band = expected + max(config.null_band_sigmas * standard_error, config.null_band_floor)
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
    }
    results = []
    if null_scores.mean() <= band:
        results.append(_passed(names[0], metrics))
    else:
        detail = f"probes on permuted labels reach PR-AUC {null_scores.mean():.3f} > band {band:.3f}"
        results.append(_failed(names[0], "null_learnable", detail, metrics))
    if real > threshold:
        results.append(_passed(names[1], metrics))
    else:
        detail = f"real-label PR-AUC {real:.3f} <= null {config.null_quantile:.0%} quantile {threshold:.3f}"
        results.append(_failed(names[1], "no_signal_vs_null", detail, metrics))
    return results


def planted_signal(
    frame: pd.DataFrame, X: np.ndarray, seed: int, config: ProbeConfig | None = None
) -> TripwireResult:
    """Append a feature = label + N(0, sd^2) and require the normal suite path to recover it.

    Fails when labels and predictions drift apart anywhere between the frame and the metrics (row
    order, filtering, split bookkeeping) -- faults the activations themselves cannot reveal.
    """
    name = "planted_signal"
    config = config or ProbeConfig()
    X = np.asarray(X)
    if not np.isfinite(X).all():
        return _failed(name, "non_finite", "activations hold NaN/inf")
    rng = np.random.default_rng([seed, 104729])
    label = frame["anchor"].to_numpy(dtype=np.float64)
    planted = label + rng.normal(0.0, config.planted_noise_sd, size=label.size)
    augmented = np.hstack([X.astype(np.float32), planted.astype(np.float32)[:, None]])
    recovered = run_probe_suite(frame, augmented, seed, _linear_only(config)).metric("linear_probe", "pr_auc")
    metrics = {
        "pr_auc": recovered,
        "threshold": config.planted_min_pr_auc,
        "noise_sd": config.planted_noise_sd,
    }
    if recovered >= config.planted_min_pr_auc:
        return _passed(name, metrics)
    return _failed(
        name,
        "planted_signal_not_recovered",
        f"PR-AUC {recovered:.3f} < {config.planted_min_pr_auc} on a feature equal to label + noise",
        metrics,
    )


def run_tripwires(
    frame: pd.DataFrame,
    X: np.ndarray,
    seed: int,
    config: ProbeConfig | None = None,
    index: pd.DataFrame | None = None,
) -> list[TripwireResult]:
    """Every tripwire for one slice: data integrity, memorisation, permutation null, planted signal.

    Each check runs even if another failed or raised (an exception becomes a failed result with
    reason ``error``), so the report always shows every fault at once.
    """
    config = config or ProbeConfig()
    results = data_integrity_tripwires(frame, X, index)
    results.append(_guarded("memorisation", lambda: memorisation(frame, X, seed, config)))
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


def _permute_within_problems(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Copy of the frame with labelled anchors shuffled inside each problem."""
    permuted = frame.copy()
    labelled = (
        frame["in_label_set"].to_numpy(dtype=bool) if "in_label_set" in frame else np.ones(len(frame), bool)
    )
    anchors = frame["anchor"].to_numpy().copy()
    problem_ids = frame["problem_id"].astype(str).to_numpy()
    for pid in sorted(set(problem_ids[labelled])):
        rows = np.flatnonzero(labelled & (problem_ids == pid))
        anchors[rows] = anchors[rng.permutation(rows)]
    permuted["anchor"] = anchors
    return permuted


def _evaluated_rows(
    frame: pd.DataFrame, X: np.ndarray, run, seed: int, config: ProbeConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, linear-probe scores, problem ids) of the rows a suite run evaluated."""
    inputs, labels = labelled_inputs(frame, X)
    scores = run.predictions.loc[run.predictions["probe"] == "linear_probe", "score"].to_numpy()
    problem_ids = inputs.frame["problem_id"].astype(str).to_numpy()
    if config.cv_mode == "holdout":
        evaluated = rows_split(problem_ids, resolve_split(inputs.frame, seed, config)) == "test"
    else:
        evaluated = np.ones(len(labels), dtype=bool)
    return labels[evaluated], scores[evaluated], problem_ids[evaluated]


def _within_problem_reference(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """PR-AUC of ``labels`` against ``scores`` shuffled within each problem, ``draws`` times.

    Shuffling scores within problems is the same in distribution as shuffling labels within problems,
    and lets one vectorised sort score every draw.
    """
    _, codes = np.unique(groups, return_inverse=True)
    canonical = np.argsort(codes, kind="stable")  # rows grouped by problem, in row order
    shuffled_order = np.argsort(codes[:, None] + rng.random((codes.size, draws)), axis=0)
    shuffled = np.empty((codes.size, draws))
    shuffled[canonical] = scores[shuffled_order]
    return pr_auc_columns(labels, shuffled)


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
