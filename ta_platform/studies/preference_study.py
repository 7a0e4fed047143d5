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
from ta_platform.preferences.judges import SimulatedJudge, planted_utilities, tasks_from_pool
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
