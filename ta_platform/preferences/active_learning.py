"""Active pair sampling for Thurstonian utilities, and the random-pairs sampler it is compared with.

Why active: a pair whose utilities are far apart almost always ends the same way and teaches little;
a pair of close tasks is most informative, and balancing degrees keeps every task measured. Each
round queries pairs in the intersection of the bottom P% of |mu_a - mu_b| and the bottom Q% of
degree sum (both relaxed x1.5 until enough pairs qualify), refits (warm-started) and stops when the
ranking stops moving (Spearman between successive fits >= threshold) or the budget is spent.
Held-out pairs are drawn uniformly at random BEFORE any sampling, so they measure generalisation to
arbitrary pairs, not to the pairs the sampler liked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ta_platform.preferences.judges import PairwiseJudge, SamplingJudge, Task
from ta_platform.preferences.thurstone import ThurstonianFit, fit_thurstonian, rank_stability

OUTCOME_COLUMNS = ("round", "task_a", "task_b", "order", "sample_index", "winner", "heldout", "p_a")


@dataclass(frozen=True)
class ActiveLearningConfig:
    """Knobs of the sampler. ``max_comparisons`` counts training comparisons (held-out excluded)."""

    initial_degree: int = 4
    samples_per_pair: int = 3
    pairs_per_round: int = 500
    bottom_mu_percent: float = 30.0
    bottom_degree_percent: float = 30.0
    convergence_threshold: float = 0.995
    max_comparisons: int = 100_000
    max_rounds: int = 50
    n_heldout_pairs: int = 500
    heldout_samples_per_pair: int = 1
    candidate_pool_factor: int = 20
    round_prior_strength: float = 0.3
    seed: int = 0


@dataclass(frozen=True)
class ActiveLearningResult:
    """Every outcome row, the final fit (prior chosen on the held-out pairs) and per-round history."""

    outcomes: pd.DataFrame  # OUTCOME_COLUMNS
    fit: ThurstonianFit
    history: pd.DataFrame  # round, n_comparisons, n_pairs_added, spearman_vs_previous, heldout_accuracy, ...
    converged: bool
    stop_reason: str


# --------------------------------------------------------------------------- graph helpers


def random_regular_pairs(n_items: int, degree: int, rng: np.random.Generator) -> np.ndarray:
    """Edges of a random ``degree``-regular simple graph as an (m, 2) array (i < j).

    Pairing model (shuffle degree copies of each node, pair neighbours) followed by random edge
    switches that remove self-loops and duplicates; switching keeps every degree unchanged. With
    an odd ``n_items * degree`` one stub is dropped (one node has degree - 1).
    """
    if degree >= n_items:
        raise ValueError(f"degree {degree} needs more than {n_items} items")
    stubs = np.repeat(np.arange(n_items), degree)
    rng.shuffle(stubs)
    if len(stubs) % 2:
        stubs = stubs[:-1]
    edges = stubs.reshape(-1, 2).copy()
    for _ in range(100):
        lo, hi = edges.min(axis=1), edges.max(axis=1)
        key = lo.astype(np.int64) * n_items + hi
        _, first_index, counts = np.unique(key, return_index=True, return_counts=True)
        duplicate = np.ones(len(edges), bool)
        duplicate[first_index] = False
        bad = np.flatnonzero((lo == hi) | duplicate)
        if len(bad) == 0:
            break
        present = set(key.tolist())
        for b in bad:  # only the few bad edges are visited
            o = int(rng.integers(len(edges)))
            u, v = edges[b]
            x, y = edges[o]
            new1, new2 = (min(u, x), max(u, x)), (min(v, y), max(v, y))
            if u == x or v == y or new1 == new2:
                continue
            k1, k2 = new1[0] * n_items + new1[1], new2[0] * n_items + new2[1]
            if k1 in present or k2 in present:
                continue
            present.discard(min(u, v) * n_items + max(u, v))
            present.discard(min(x, y) * n_items + max(x, y))
            present.update((k1, k2))
            edges[b], edges[o] = (u, x), (v, y)
    lo, hi = edges.min(axis=1), edges.max(axis=1)
    keep = lo != hi
    pairs = np.unique(np.stack([lo[keep], hi[keep]], axis=1), axis=0)
    return pairs


def _pair_keys(pairs: np.ndarray, n_items: int) -> np.ndarray:
    return np.minimum(pairs[:, 0], pairs[:, 1]).astype(np.int64) * n_items + np.maximum(pairs[:, 0], pairs[:, 1])


def draw_heldout_pairs(n_items: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random distinct unordered pairs, drawn before any sampling."""
    total = n_items * (n_items - 1) // 2
    n_pairs = min(n_pairs, total)
    chosen: set[int] = set()
    while len(chosen) < n_pairs:
        a = rng.integers(0, n_items, 2 * (n_pairs - len(chosen)) + 8)
        b = rng.integers(0, n_items, len(a))
        keep = a != b
        keys = np.minimum(a[keep], b[keep]).astype(np.int64) * n_items + np.maximum(a[keep], b[keep])
        for k in keys.tolist():
            if len(chosen) < n_pairs:
                chosen.add(k)
    keys = np.array(sorted(chosen), dtype=np.int64)
    return np.stack([keys // n_items, keys % n_items], axis=1)


def select_informative_pairs(mu: np.ndarray, degree: np.ndarray, n_pairs: int, excluded: set[int],
                             rng: np.random.Generator, *, bottom_mu_percent: float, bottom_degree_percent: float,
                             candidate_pool_factor: int = 20) -> np.ndarray:
    """Pairs in the bottom P% of |mu_a - mu_b| AND the bottom Q% of degree sum, relaxed x1.5 as needed.

    Candidates are all unseen pairs when there are few tasks, else a seeded random pool of
    ``candidate_pool_factor * n_pairs`` unseen pairs (all pairs of 10k tasks would be 50M).
    """
    n = len(mu)
    total = n * (n - 1) // 2
    if total <= 200_000:
        a, b = np.triu_indices(n, k=1)
        candidates = np.stack([a, b], axis=1)
    else:
        size = candidate_pool_factor * n_pairs
        a = rng.integers(0, n, size)
        b = (a + rng.integers(1, n, size)) % n
        candidates = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    if excluded:
        keep = ~np.isin(_pair_keys(candidates, n), np.fromiter(excluded, np.int64, len(excluded)))
        candidates = candidates[keep]
    if len(candidates) <= n_pairs:
        return candidates
    gap = np.abs(mu[candidates[:, 0]] - mu[candidates[:, 1]])
    load = degree[candidates[:, 0]] + degree[candidates[:, 1]]
    p, q = bottom_mu_percent, bottom_degree_percent
    while True:
        eligible = np.flatnonzero((gap <= np.percentile(gap, min(p, 100.0)))
                                  & (load <= np.percentile(load, min(q, 100.0))))
        if len(eligible) >= n_pairs or (p >= 100.0 and q >= 100.0):
            break
        p, q = p * 1.5, q * 1.5
    chosen = rng.choice(eligible, size=min(n_pairs, len(eligible)), replace=False)
    return candidates[chosen]


# --------------------------------------------------------------------------- querying


def query_pairs(judge: PairwiseJudge, tasks: Sequence[Task], pairs: np.ndarray, samples_per_pair: int,
                round_index: int, heldout: bool, rng: np.random.Generator) -> pd.DataFrame:
    """Ask the judge ``samples_per_pair`` times per pair, alternating presentation order.

    Order "ab" shows task_a first, "ba" shows task_b first (alternating over samples and pairs); winners are always recorded relative to
    (task_a, task_b). A judge that samples itself is sampled; otherwise choices are Bernoulli draws
    from its P(first chosen). All queries of a call go to the judge in one batch. ``p_a`` keeps the
    judge's P(task_a wins) for each row (the exact accuracy ceiling, and repeats need no re-query).
    """
    if len(pairs) == 0:
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))
    rep_pairs = np.repeat(pairs, samples_per_pair, axis=0)
    sample_index = np.tile(np.arange(samples_per_pair), len(pairs))
    pair_index = np.repeat(np.arange(len(pairs)), samples_per_pair)
    a_first = (sample_index + pair_index) % 2 == 0  # balanced orders even with one sample per pair
    firsts = np.where(a_first, rep_pairs[:, 0], rep_pairs[:, 1])
    seconds = np.where(a_first, rep_pairs[:, 1], rep_pairs[:, 0])
    shown = [(tasks[f], tasks[s]) for f, s in zip(firsts.tolist(), seconds.tolist(), strict=True)]
    p_first = np.asarray(judge.prefer_first(shown), dtype=float)
    if isinstance(judge, SamplingJudge):
        first_chosen = np.asarray(judge.sample_first_chosen(shown), dtype=bool)
    else:
        first_chosen = rng.random(len(shown)) < p_first
    a_won = first_chosen == a_first
    return pd.DataFrame({
        "round": round_index,
        "task_a": [tasks[i].task_id for i in rep_pairs[:, 0].tolist()],
        "task_b": [tasks[i].task_id for i in rep_pairs[:, 1].tolist()],
        "order": np.where(a_first, "ab", "ba"),
        "sample_index": sample_index,
        "winner": np.where(a_won, "a", "b"),
        "heldout": heldout,
        "p_a": np.where(a_first, p_first, 1.0 - p_first),  # the judge's own P(task_a wins): exact ceiling
    })


# --------------------------------------------------------------------------- samplers


def _fit_round(outcomes: pd.DataFrame, task_ids: list[str], prior: float, init: ThurstonianFit | None) -> ThurstonianFit:
    return fit_thurstonian(outcomes, task_ids, prior_grid=(prior,), init=init)


def _run(tasks: Sequence[Task], judge: PairwiseJudge, config: ActiveLearningConfig, *, active: bool) -> ActiveLearningResult:
    rng = np.random.default_rng(config.seed)
    task_ids = [t.task_id for t in tasks]
    if len(set(task_ids)) != len(task_ids):
        raise ValueError("task ids must be unique")
    n = len(tasks)
    heldout_pairs = draw_heldout_pairs(n, config.n_heldout_pairs, rng)
    excluded = set(_pair_keys(heldout_pairs, n).tolist())
    frames = [query_pairs(judge, tasks, heldout_pairs, config.heldout_samples_per_pair, 0, True, rng)]

    if active:
        initial = random_regular_pairs(n, config.initial_degree, rng)
        initial = initial[~np.isin(_pair_keys(initial, n), np.fromiter(excluded, np.int64, len(excluded)))]
    else:
        initial = np.empty((0, 2), np.int64)
    degree = np.zeros(n)
    history: list[dict[str, float | int]] = []
    fit: ThurstonianFit | None = None
    previous_mu: pd.Series | None = None
    n_train = 0
    stop_reason, converged = "max_rounds", False
    for round_index in range(config.max_rounds + 1):
        budget_left = config.max_comparisons - n_train
        max_pairs = budget_left // config.samples_per_pair
        if round_index == 0 and active:
            new_pairs = initial[:max_pairs]
        elif active:
            new_pairs = select_informative_pairs(
                fit.utilities["mu"].to_numpy(), degree, min(config.pairs_per_round, max_pairs), excluded, rng,
                bottom_mu_percent=config.bottom_mu_percent, bottom_degree_percent=config.bottom_degree_percent,
                candidate_pool_factor=config.candidate_pool_factor)
        else:
            new_pairs = select_informative_pairs(
                np.zeros(n), np.zeros(n), min(config.pairs_per_round, max_pairs), excluded, rng,
                bottom_mu_percent=100.0, bottom_degree_percent=100.0,
                candidate_pool_factor=config.candidate_pool_factor)
        if len(new_pairs) == 0:
            stop_reason = "budget" if max_pairs == 0 else "no_pairs_left"
            break
        frames.append(query_pairs(judge, tasks, new_pairs, config.samples_per_pair, round_index, False, rng))
        excluded.update(_pair_keys(new_pairs, n).tolist())
        np.add.at(degree, new_pairs.ravel(), config.samples_per_pair)
        n_train += len(new_pairs) * config.samples_per_pair
        outcomes = pd.concat(frames, ignore_index=True)
        fit = _fit_round(outcomes, task_ids, config.round_prior_strength, fit)
        mu = fit.mu()
        stability = rank_stability(previous_mu, mu) if previous_mu is not None else float("nan")
        previous_mu = mu
        history.append({"round": round_index, "n_comparisons": n_train, "n_pairs_added": len(new_pairs),
                        "spearman_vs_previous": stability, "heldout_accuracy": fit.heldout_accuracy,
                        "heldout_log_loss": fit.heldout_log_loss})
        if stability >= config.convergence_threshold:
            stop_reason, converged = "rank_stable", True
            break
        if n_train + config.samples_per_pair > config.max_comparisons:
            stop_reason = "budget"
            break
    outcomes = pd.concat(frames, ignore_index=True)[list(OUTCOME_COLUMNS)]
    if n_train == 0:
        raise ValueError("the comparison budget allows no training comparisons")
    final = fit_thurstonian(outcomes, task_ids, init=fit)  # prior strength chosen on the held-out pairs
    return ActiveLearningResult(outcomes=outcomes, fit=final, history=pd.DataFrame(history),
                                converged=converged, stop_reason=stop_reason)


def run_active_learning(tasks: Sequence[Task], judge: PairwiseJudge,
                        config: ActiveLearningConfig | None = None) -> ActiveLearningResult:
    """Active sampling from a random d-regular start graph until rank-stable or out of budget."""
    return _run(tasks, judge, config or ActiveLearningConfig(), active=True)


def run_random_pairs(tasks: Sequence[Task], judge: PairwiseJudge,
                     config: ActiveLearningConfig | None = None) -> ActiveLearningResult:
    """Uniformly random unseen pairs with the same rounds, budget, held-out pairs and stopping rule.

    The baseline active learning must beat; with the same seed the held-out pairs are identical.
    """
    return _run(tasks, judge, config or ActiveLearningConfig(), active=False)


def comparisons_to_reach(history: pd.DataFrame, target_accuracy: float) -> float:
    """Training comparisons at the first round whose held-out accuracy reached the target (inf if never)."""
    hit = history.loc[history["heldout_accuracy"] >= target_accuracy, "n_comparisons"]
    return float(hit.iloc[0]) if len(hit) else float("inf")


__all__ = ["ActiveLearningConfig", "ActiveLearningResult", "OUTCOME_COLUMNS", "comparisons_to_reach",
           "draw_heldout_pairs", "query_pairs", "random_regular_pairs", "run_active_learning",
           "run_random_pairs", "select_informative_pairs"]
