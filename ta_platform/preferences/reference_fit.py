"""The common public recipe for Thurstonian utilities, kept only as a benchmark reference.

Recipe: Adam on soft labels (the empirical win rate of each unique pair), 1000 full-batch steps,
mu standardised after every step (sigma rescaled by the same factor so the model is unchanged).
Why keep it: the benchmark must show, in the same run and on the same data, that the platform's fit
is faster and at least as accurate. Not used by the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ta_platform.preferences.thurstone import aggregate_pairs, validate_outcomes


def fit_thurstonian_adam(
    outcomes: pd.DataFrame,
    task_ids: Sequence[str],
    *,
    steps: int = 1000,
    learning_rate: float = 0.01,
    seed: int = 0,
) -> tuple[pd.DataFrame, float]:
    """Return (``task_id, mu, sigma`` utilities, seconds) fitted with the Adam soft-label recipe.

    Runs with one torch thread (restored afterwards) so the comparison is not flattered by thread
    contention: on the shared 2-core machine one thread was the reference's fastest setting.
    """
    import torch  # lazy: only the benchmark needs torch here

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # its faster setting here: ~12x faster than 2 threads on a shared 2-core box
    try:
        return _fit(torch, outcomes, task_ids, steps, learning_rate, seed)
    finally:
        torch.set_num_threads(threads)


def _fit(torch, outcomes, task_ids, steps, learning_rate, seed) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    frame = validate_outcomes(outcomes, task_ids)
    index = pd.Index(pd.Series(list(task_ids), dtype=str))
    pairs = aggregate_pairs(frame, index)
    total = pairs.wins_first + pairs.wins_second
    first = torch.as_tensor(pairs.first)
    second = torch.as_tensor(pairs.second)
    soft = torch.as_tensor(pairs.wins_first / total, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    n = len(index)
    mu = (0.01 * torch.randn(n, generator=generator)).requires_grad_()
    log_sigma = torch.zeros(n, requires_grad=True)
    optimizer = torch.optim.Adam([mu, log_sigma], lr=learning_rate)
    normal = torch.distributions.Normal(0.0, 1.0)
    for _ in range(steps):
        optimizer.zero_grad()
        var = torch.exp(2 * log_sigma)
        z = (mu[first] - mu[second]) / torch.sqrt(var[first] + var[second])
        prob = normal.cdf(z).clamp(1e-6, 1 - 1e-6)
        loss = torch.nn.functional.binary_cross_entropy(prob, soft)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # per-step standardisation of mu (sigma follows the same scale)
            std = mu.std().clamp_min(1e-8)
            mu.sub_(mu.mean()).div_(std)
            log_sigma.sub_(torch.log(std))
    utilities = pd.DataFrame({
        "task_id": index.to_numpy(),
        "mu": mu.detach().numpy().astype(np.float64),
        "sigma": np.exp(log_sigma.detach().numpy().astype(np.float64)),
    })
    return utilities, time.perf_counter() - started
