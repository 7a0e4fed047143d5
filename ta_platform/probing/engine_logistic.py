"""Many class-balanced L2 logistic heads fitted in one pass over the same rows (batched L-BFGS).

Why: every study fits several logistic probes on ONE activation matrix -- each L2 value of a grid,
each lag of the backtracking study -- and refitting them one by one reads (and standardises) the
data once per head. Here a head is one (target, C) pair; all heads share the standardised rows, so
each L-BFGS iteration costs two matrix products over the data whatever the number of heads.

The objective of head (t, C) is sklearn's, so existing C grids carry over::

    C * sum_i w_i * logloss(y_it, z_i . w + b) + 0.5 * ||w||^2       (intercept b unpenalised)

summed over the rows where target t is present (``mask``), with balanced weights
``w_i = n_t / (2 * n_class)``. It is divided by ``C * sum_i w_i`` (same minimiser) so every head's
gradient is on one scale and one tolerance fits all.

The L-BFGS runs independently per head (own history, own step, own convergence), vectorised over
heads. Line searches are nearly free: logits are linear in the parameters, so ``Z @ direction`` is
computed once per iteration and every trial step is an elementwise update of the logits.

Two ways to run the two products per iteration (``data_plan``): full batch, where the standardised
training rows live on the device as one float32 matrix, when that fits ``memory_budget_bytes``; or
streaming, where every product reads the rows block by block from the source (a memmap or store
partition) and standardises each block on the fly. Both compute the same full-data gradient, so they
converge to the same coefficients (up to float32 summation order); streaming costs two reads of the
rows per iteration instead of memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .engine_data import DEFAULT_BLOCK_ROWS, as_row_source, engine_device, resolve_rows
from .streaming_scaler import Standardisation, fit_standardisation

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
HISTORY = 10
ARMIJO = 1e-4
MAX_HALVINGS = 40
REFRESH = 50  # iterations between exact recomputations of the logits


@dataclass
class LogisticHeads:
    """Fitted heads: ``decision = ((x - scaler.mean) / scaler.scale) @ coef[t, g] + intercept[t, g]``."""

    coef: np.ndarray  # [targets, grid, dims] float64, in standardised units
    intercept: np.ndarray  # [targets, grid]
    c_grid: tuple[float, ...]
    scaler: Standardisation
    n_iter: np.ndarray  # [targets, grid] iterations until each head converged (or max_iter)
    converged: np.ndarray  # [targets, grid] bool
    plan: str  # "full_batch" or "streaming"
    device: str
    info: dict = field(default_factory=dict)

    def decision(self, data, rows: np.ndarray | None = None, *, block_rows: int = DEFAULT_BLOCK_ROWS) -> np.ndarray:
        """Scores of every head on ``rows``: [rows, targets, grid] float64 (streamed in blocks)."""
        source = as_row_source(data)
        rows = resolve_rows(source, rows)
        n_targets, n_grid, dims = self.coef.shape
        if source.dims != dims:
            raise ValueError(f"heads were fitted on {dims} dims, the data has {source.dims}")
        weights = self.coef.reshape(-1, dims).T  # [dims, heads]
        out = np.empty((rows.size, n_targets * n_grid), dtype=np.float64)
        for part, block in source.blocks(rows, block_rows, dtype=np.float64):
            out[part] = self.scaler.transform(block) @ weights
        return (out + self.intercept.reshape(-1)).reshape(rows.size, n_targets, n_grid)

    def select(self, target: int = 0, grid_index: int = 0) -> LogisticHeads:
        """One head as a single-head ``LogisticHeads`` (shares the scaler)."""
        keep = (slice(target, target + 1), slice(grid_index, grid_index + 1))
        return LogisticHeads(self.coef[keep].copy(), self.intercept[keep].copy(), (self.c_grid[grid_index],),
                             self.scaler, self.n_iter[keep].copy(), self.converged[keep].copy(), self.plan,
                             self.device, dict(self.info))

    def head(self, target: int = 0, grid_index: int = 0) -> dict[str, np.ndarray]:
        """One head as the probing package's weights dict (coef, intercept, scaler_mean, scaler_scale)."""
        return {"coef": self.coef[target, grid_index].copy(),
                "intercept": np.array([self.intercept[target, grid_index]], dtype=np.float64),
                "scaler_mean": self.scaler.mean.copy(), "scaler_scale": self.scaler.scale.copy()}


def plan_bytes(n_rows: int, dims: int, n_heads: int) -> int:
    """Device bytes of a full-batch fit: the float32 rows plus ~8 float64 [rows, heads] work arrays."""
    return n_rows * dims * 4 + 8 * n_rows * n_heads * 8 + 4 * (2 * HISTORY + 4) * (dims + 1) * n_heads * 8


def fit_logistic_heads(
    data,
    labels: np.ndarray,
    *,
    c_grid,
    rows: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    class_weight: str | None = "balanced",
    max_iter: int = 1000,
    tol: float = 1e-4,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str | torch.device | None = None,
    streaming: bool | None = None,
    scaler: Standardisation | None = None,
) -> LogisticHeads:
    """Fit a head per (target, C) on the training ``rows`` of ``data`` in one batched L-BFGS.

    ``labels``: [len(rows)] or [len(rows), targets] of 0/1, aligned with ``rows`` (all rows when
    ``rows`` is None). ``mask``: same shape, True where the label exists (e.g. a lag past the chain's
    end is missing). ``streaming=None`` picks full batch when ``plan_bytes`` fits the budget.
    ``scaler``: precomputed training-row statistics (default: one streaming pass over ``rows``).
    """
    source = as_row_source(data)
    rows = resolve_rows(source, rows)
    y = np.asarray(labels)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.shape[0] != rows.size:
        raise ValueError(f"{y.shape[0]} label rows for {rows.size} training rows")
    present = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(y.shape)
    c_values = tuple(float(c) for c in np.atleast_1d(c_grid))
    if not c_values or min(c_values) <= 0:
        raise ValueError(f"C grid must hold positive values, got {c_values}")
    sample_weight = _sample_weights(y, present, class_weight)
    scaler = scaler or fit_standardisation(source, rows, block_rows=block_rows)
    dev = engine_device(device)
    n_heads = y.shape[1] * len(c_values)
    full = plan_bytes(rows.size, source.dims, n_heads) <= memory_budget_bytes if streaming is None else not streaming
    oracle = (_FullBatch if full else _Streaming)(source, rows, scaler, dev, block_rows)
    theta, n_iter, converged = _batched_lbfgs(oracle, y, sample_weight, c_values, max_iter, tol, dev)
    n_targets, n_grid = y.shape[1], len(c_values)
    coef = theta[:-1].T.reshape(n_targets, n_grid, source.dims)
    intercept = theta[-1].reshape(n_targets, n_grid)
    return LogisticHeads(coef, intercept, c_values, scaler, n_iter.reshape(n_targets, n_grid),
                         converged.reshape(n_targets, n_grid), "full_batch" if full else "streaming", str(dev),
                         {"rows": int(rows.size), "dims": int(source.dims), "heads": n_heads,
                          "memory_budget_bytes": int(memory_budget_bytes), "tol": tol, "max_iter": max_iter})


def _sample_weights(y: np.ndarray, present: np.ndarray, class_weight: str | None) -> np.ndarray:
    """[rows, targets] weights: balanced per target over its present rows, 0 where the label is missing."""
    weights = np.zeros(y.shape, dtype=np.float64)
    for t in range(y.shape[1]):
        labels = y[present[:, t], t].astype(int)
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"target {t}: labels must be 0/1, got {sorted(set(labels.tolist()))[:5]}")
        n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
        if n_pos == 0 or n_neg == 0:
            raise ValueError(f"target {t}: training rows hold one class only ({n_pos} positive, {n_neg} negative)")
        if class_weight == "balanced":
            w_pos, w_neg = labels.size / (2.0 * n_pos), labels.size / (2.0 * n_neg)
        elif class_weight is None:
            w_pos = w_neg = 1.0
        else:
            raise ValueError(f"class_weight must be 'balanced' or None, not {class_weight!r}")
        weights[:, t] = np.where(present[:, t], np.where(y[:, t] == 1, w_pos, w_neg), 0.0)
    return weights


class _Standardiser:
    """float32 ``(x - mean) / scale`` on the device, as accurate as a float64 computation rounded to float32.

    The mean is split into a float32 head and a float32 tail: ``x - head`` is correctly rounded relative
    to the (small) difference, so subtracting the tail recovers what float64 would give, at float32
    speed and memory (a float64 block costs ~8x more time in the streaming pass).
    """

    def __init__(self, scaler: Standardisation, device):
        head = scaler.mean.astype(np.float32)
        self.head = torch.from_numpy(head).to(device)
        self.tail = torch.from_numpy((scaler.mean - head.astype(np.float64)).astype(np.float32)).to(device)
        self.inverse = torch.from_numpy((1.0 / scaler.scale).astype(np.float32)).to(device)
        self.device = device

    def __call__(self, block: np.ndarray) -> torch.Tensor:
        z = torch.from_numpy(block).to(self.device)  # the block is a fresh float32 array: work in place
        return z.sub_(self.head).sub_(self.tail).mul_(self.inverse)


class _FullBatch:
    """The standardised training rows held on the device as one float32 matrix."""

    plan = "full_batch"

    def __init__(self, source, rows, scaler: Standardisation, device, block_rows):
        self.device, self.dims = device, source.dims
        self.z = torch.empty((rows.size, source.dims), dtype=torch.float32, device=device)
        standardise = _Standardiser(scaler, device)
        for part, block in source.blocks(rows, block_rows, dtype=np.float32):
            self.z[part] = standardise(block)

    def project(self, weights: torch.Tensor) -> torch.Tensor:
        return (self.z @ weights.to(torch.float32)).to(torch.float64)

    def backproject(self, residual: torch.Tensor) -> torch.Tensor:
        return (self.z.T @ residual.to(torch.float32)).to(torch.float64)


class _Streaming:
    """Each product reads the rows block by block and standardises the block on the fly."""

    plan = "streaming"

    def __init__(self, source, rows, scaler: Standardisation, device, block_rows):
        self.source, self.rows, self.device, self.block_rows = source, rows, device, block_rows
        self.dims = source.dims
        self.standardise = _Standardiser(scaler, device)

    def _blocks(self):
        for part, block in self.source.blocks(self.rows, self.block_rows, dtype=np.float32):
            yield part, self.standardise(block)

    def project(self, weights: torch.Tensor) -> torch.Tensor:
        out = torch.empty((self.rows.size, weights.shape[1]), dtype=torch.float64, device=self.device)
        w32 = weights.to(torch.float32)
        for part, z in self._blocks():
            out[part] = (z @ w32).to(torch.float64)
        return out

    def backproject(self, residual: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((self.source.dims, residual.shape[1]), dtype=torch.float64, device=self.device)
        for part, z in self._blocks():
            total += (z.T @ residual[part].to(torch.float32)).to(torch.float64)
        return total


def _batched_lbfgs(oracle, y: np.ndarray, sample_weight: np.ndarray, c_values, max_iter: int, tol: float, device):
    """Per-head L-BFGS (Armijo backtracking in logit space); returns theta [dims + 1, heads], iterations, converged.

    Head h = target h // len(C), C index h % len(C). Row weights are normalised to sum 1 per head, the
    L2 strength becomes 1 / (C * sum of weights).
    """
    n_targets, n_grid = y.shape[1], len(c_values)
    head_target = np.repeat(np.arange(n_targets), n_grid)
    weight_sum = sample_weight.sum(axis=0)
    a = torch.from_numpy(sample_weight[:, head_target] / weight_sum[head_target]).to(device)  # [rows, heads]
    target = torch.from_numpy(np.where(y[:, head_target] == 1, 1.0, 0.0)).to(device)
    sign = 1.0 - 2.0 * target  # logloss = softplus(sign * logit)
    lam = torch.from_numpy(1.0 / (np.tile(np.asarray(c_values), n_targets) * weight_sum[head_target])).to(device)
    n_heads = head_target.size
    dims = oracle.dims

    def loss_of(logits, theta_w_sq):
        return (a * torch.nn.functional.softplus(sign * logits)).sum(0) + 0.5 * lam * theta_w_sq

    def gradient(logits, theta):
        residual = a * (torch.sigmoid(logits) - target)
        grad = torch.empty_like(theta)
        grad[:-1] = oracle.backproject(residual) + lam * theta[:-1]
        grad[-1] = residual.sum(0)
        return grad

    theta = torch.zeros((dims + 1, n_heads), dtype=torch.float64, device=device)  # a cold start: a warm start
    logits = torch.zeros_like(a)  # from train's fit did not cut the train + val refit's iterations (measured)
    loss = loss_of(logits, torch.zeros(n_heads, dtype=torch.float64, device=device))
    grad = gradient(logits, theta)
    s_hist, y_hist, rho_hist = [], [], []
    gamma = torch.ones(n_heads, dtype=torch.float64, device=device)
    active = torch.ones(n_heads, dtype=torch.bool, device=device)
    iterations = torch.zeros(n_heads, dtype=torch.int64, device=device)
    ftol = 2.2e-9  # scipy's L-BFGS-B default factr * eps, as sklearn uses
    for iteration in range(max_iter):
        if iteration and iteration % REFRESH == 0:  # logits are updated incrementally: recompute them exactly
            logits = oracle.project(theta[:-1]) + theta[-1]
            loss = loss_of(logits, (theta[:-1] ** 2).sum(0))
            grad = gradient(logits, theta)
        active &= grad.abs().amax(0) > tol
        if not bool(active.any()):
            break
        iterations += active.to(torch.int64)
        direction = -_two_loop(grad, s_hist, y_hist, rho_hist, gamma)
        slope = (direction * grad).sum(0)
        bad = slope >= 0  # not a descent direction (lost curvature): fall back to steepest descent
        direction[:, bad] = -grad[:, bad]
        slope = torch.where(bad, -(grad * grad).sum(0), slope)
        direction[:, ~active] = 0.0
        slope = torch.where(active, slope, torch.zeros_like(slope))
        z_dir = oracle.project(direction[:-1]) + direction[-1]
        w_sq, w_dot, d_sq = (theta[:-1] ** 2).sum(0), (theta[:-1] * direction[:-1]).sum(0), (direction[:-1] ** 2).sum(0)
        step = torch.where(active, torch.ones_like(loss), torch.zeros_like(loss))
        if not s_hist:  # first iteration: a gradient step of unit length per head
            step = step / torch.clamp(direction.norm(dim=0), min=1.0)
        accepted = ~active
        new_loss = loss.clone()
        for _ in range(MAX_HALVINGS):
            trial = loss_of(logits + step * z_dir, w_sq + 2 * step * w_dot + step**2 * d_sq)
            ok = (trial <= loss + ARMIJO * step * slope) & ~accepted
            new_loss = torch.where(ok, trial, new_loss)
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        stalled = ~accepted  # no decrease at any step: at the optimum to float precision
        step = torch.where(stalled, torch.zeros_like(step), step)
        new_loss = torch.where(stalled, loss, new_loss)
        theta_new = theta + step * direction
        logits = logits + step * z_dir
        grad_new = gradient(logits, theta_new)
        s, y_diff = theta_new - theta, grad_new - grad
        sy = (s * y_diff).sum(0)
        valid = sy > 1e-12 * torch.clamp((y_diff * y_diff).sum(0), min=1e-300)
        rho = torch.where(valid, 1.0 / torch.where(valid, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        gamma = torch.where(valid, sy / torch.clamp((y_diff * y_diff).sum(0), min=1e-300), gamma)
        s_hist.append(s)
        y_hist.append(y_diff)
        rho_hist.append(rho)
        if len(s_hist) > HISTORY:
            s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        small_change = (loss - new_loss) <= ftol * torch.clamp(torch.maximum(loss.abs(), new_loss.abs()), min=1.0)
        active &= ~(stalled | (small_change & (step > 0)))
        theta, grad, loss = theta_new, grad_new, new_loss
    converged = ~active | (grad.abs().amax(0) <= tol)
    return theta.cpu().numpy(), iterations.cpu().numpy(), converged.cpu().numpy()


def _two_loop(grad, s_hist, y_hist, rho_hist, gamma):
    """H_k @ grad per column: the L-BFGS two-loop recursion, each head with its own history."""
    q = grad.clone()
    alphas = []
    for s, y_diff, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist), strict=True):
        alpha = rho * (s * q).sum(0)
        q -= alpha * y_diff
        alphas.append(alpha)
    r = gamma * q if s_hist else q
    for (s, y_diff, rho), alpha in zip(zip(s_hist, y_hist, rho_hist, strict=True), reversed(alphas), strict=True):
        beta = rho * (y_diff * r).sum(0)
        r += s * (alpha - beta)
    return r
