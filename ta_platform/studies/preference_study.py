"""The preference study in plain Python: judge -> outcomes -> utilities -> utility probes.

Everything is seeded and written with provenance by the Dagster assets; these functions only
compute. The embedded default judge is simulated: its hidden utility is a linear readout of the
judge model's own prompt activations plus topic effects and noise (docs/preferences.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_platform.common.threads import single_blas_thread
from ta_platform.preferences.active_learning import ActiveLearningConfig, run_active_learning
from ta_platform.preferences.judges import (
    GreedyJudge,
    HFLogitJudge,
    SimulatedJudge,
    planted_utilities,
    tasks_from_pool,
)
from ta_platform.preferences.thurstone import ThurstonianFit, fit_thurstonian

TASK_SETS = ("train", "eval")


def planted_judge(task_pool: pd.DataFrame, activations: np.ndarray, seed: int):
    """A simulated judge whose hidden utility reads the judge model's prompt activations."""
    planted = planted_utilities(activations, task_pool["topic"].to_numpy(), seed=seed)
    truth = planted.as_frame(task_pool["task_id"].tolist())
    mu = dict(zip(truth["task_id"], truth["mu"], strict=True))
    sigma = dict(zip(truth["task_id"], truth["sigma"], strict=True))
    return SimulatedJudge(mu, sigma, seed=seed), truth


def measure_preferences(task_pool: pd.DataFrame, judge, config: ActiveLearningConfig, log=print) -> pd.DataFrame:
    """Active learning separately on the train and the eval tasks; every outcome with its task set."""
    tasks = tasks_from_pool(task_pool)
    frames = []
    with single_blas_thread():
        for task_set in TASK_SETS:
            ids = task_pool.loc[task_pool["task_set"] == task_set, "task_id"]
            result = run_active_learning([tasks[i] for i in ids], judge, config)
            log(f"{task_set}: {len(result.outcomes)} outcomes in {int(result.history['round'].max()) + 1} rounds, "
                f"stopped: {result.stop_reason}; held-out accuracy {result.fit.heldout_accuracy:.3f}")
            frames.append(result.outcomes.assign(task_set=task_set))
    return pd.concat(frames, ignore_index=True)


def fit_utilities(outcomes: pd.DataFrame, seed: int) -> dict[str, ThurstonianFit]:
    """One MAP fit per task set, with the prior strength chosen on that set's held-out pairs."""
    with single_blas_thread():
        return {task_set: fit_thurstonian(outcomes[outcomes["task_set"] == task_set].drop(columns=["task_set"]),
                                          seed=seed)
                for task_set in TASK_SETS}


def model_judge(model, tokenizer, choice: str = "greedy", system_prompt: str | None = None):
    """The real judge: option logits of ``model`` (both orders), choices sampled or greedy."""
    judge = HFLogitJudge(model, tokenizer, system_prompt)
    if choice == "greedy":
        return GreedyJudge(judge)
    if choice != "sample":
        raise ValueError(f"unknown judge_choice {choice!r}: use 'sample' or 'greedy'")
    return judge


def _order_judge(judge) -> HFLogitJudge | None:
    inner = judge.judge if isinstance(judge, GreedyJudge) else judge
    return inner if isinstance(inner, HFLogitJudge) else None


def judge_consistency(task_pool: pd.DataFrame, outcomes: pd.DataFrame, judge, name: str) -> pd.DataFrame:
    """How far a judge agrees with itself, per task set, on its held-out pairs.

    ``order_agreement``: the task picked with it shown first is also picked with it shown second
    (a judge that always answers "A" scores 0; NaN for judges without per-order probabilities);
    ``sample_agreement``: two independent choices of the judge agree, mean p^2 + (1-p)^2;
    ``accuracy_ceiling``: mean max(p, 1-p), the best any utility model can predict its choices.
    ``heldout_accuracy`` is filled in by the Thurstonian fit (NaN here).
    """
    tasks = tasks_from_pool(task_pool)
    order_judge = _order_judge(judge)
    rows = []
    for task_set, group in outcomes[outcomes["heldout"].astype(bool)].groupby("task_set"):
        pairs = group.drop_duplicates(["task_a", "task_b"])
        p = pairs["p_a"].to_numpy(float)
        agreement = float("nan")
        if order_judge is not None:
            shown = [(tasks[a], tasks[b]) for a, b in zip(pairs["task_a"], pairs["task_b"], strict=True)]
            first, second = order_judge.order_probabilities(shown)
            agreement = float(np.mean((first > 0.5) == (second > 0.5)))
        rows.append({"task_set": task_set, "judge": name, "n_pairs": len(pairs), "order_agreement": agreement,
                     "sample_agreement": float(np.mean(p**2 + (1 - p) ** 2)),
                     "accuracy_ceiling": float(np.mean(np.maximum(p, 1 - p))), "heldout_accuracy": float("nan")})
    return pd.DataFrame(rows)

