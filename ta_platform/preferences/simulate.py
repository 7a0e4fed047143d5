"""Simulated Thurstonian data with known utilities, for tests, benchmarks and the embedded default.

Why: recovery of KNOWN utilities is the only direct check that a fit is right, and the Bayes-optimal
accuracy (predicting with the true utilities) is the ceiling every fit should be judged against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr


def simulate_utilities(n_tasks: int, *, seed: int = 0, mu_scale: float = 1.0,
                       sigma_range: tuple[float, float] = (0.3, 0.7)) -> pd.DataFrame:
    """True ``task_id, mu, sigma``: mu ~ N(0, mu_scale^2), sigma ~ U(sigma_range)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "task_id": [f"t{i:05d}" for i in range(n_tasks)],
        "mu": rng.normal(0.0, mu_scale, n_tasks),
        "sigma": rng.uniform(*sigma_range, n_tasks),
    })


def random_distinct_pairs(n_items: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` uniformly random ordered pairs (a != b), as an (n_pairs, 2) index array."""
    a = rng.integers(0, n_items, n_pairs)
    b = (a + rng.integers(1, n_items, n_pairs)) % n_items
    return np.stack([a, b], axis=1)


def true_probability(truth: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(a preferred to b) under the TRUE utilities (index arrays into ``truth``)."""
    mu, sigma = truth["mu"].to_numpy(), truth["sigma"].to_numpy()
    return ndtr((mu[a] - mu[b]) / np.sqrt(sigma[a] ** 2 + sigma[b] ** 2))


def simulate_comparisons(truth: pd.DataFrame, n_comparisons: int, *, n_heldout: int = 0,
                         seed: int = 0) -> pd.DataFrame:
    """One row per single comparison of a uniformly random pair, plus ``n_heldout`` held-out rows.

    Columns: ``task_a, task_b, winner, heldout, p_true``. Held-out pairs are drawn first, from the
    same distribution, and never reused for training rows.
    """
    rng = np.random.default_rng(seed)
    n = len(truth)
    held = random_distinct_pairs(n, n_heldout, rng)
    held_keys = set((np.minimum(held[:, 0], held[:, 1]) * n + np.maximum(held[:, 0], held[:, 1])).tolist())
    if n_comparisons and len(held_keys) >= n * (n - 1) // 2:
        raise ValueError("every pair is held out; nothing left for training comparisons")
    held_array = np.fromiter(held_keys, np.int64, len(held_keys))
    chunks, drawn = [], 0
    while drawn < n_comparisons:  # rejection sampling: pairs never coincide with held-out pairs
        batch = random_distinct_pairs(n, n_comparisons - drawn + n_comparisons // 10 + 10, rng)
        keys = np.minimum(batch[:, 0], batch[:, 1]) * n + np.maximum(batch[:, 0], batch[:, 1])
        batch = batch[~np.isin(keys, held_array)]
        chunks.append(batch)
        drawn += len(batch)
    train = np.concatenate(chunks)[:n_comparisons]
    pairs = np.concatenate([train, held])
    p = true_probability(truth, pairs[:, 0], pairs[:, 1])
    won = rng.random(len(pairs)) < p
    ids = truth["task_id"].to_numpy()
    return pd.DataFrame({
        "task_a": ids[pairs[:, 0]],
        "task_b": ids[pairs[:, 1]],
        "winner": np.where(won, "a", "b"),
        "heldout": np.r_[np.zeros(len(train), bool), np.ones(len(held), bool)],
        "p_true": p,
    })


def bayes_accuracy(p_true: np.ndarray) -> float:
    """Expected accuracy of the Bayes-optimal predictor (true utilities): mean max(p, 1 - p)."""
    return float(np.mean(np.maximum(p_true, 1.0 - p_true)))
