"""The math-rollouts Hub layout, in one place.

Why: the same relative paths are used by the local source, the Hub source, the generator and the
tests; spelling them once keeps all four in agreement with the real dataset
(``<model>/temperature_0.6_top_p_0.95/<split>/problem_<ID>/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TEMPERATURE_DIR = "temperature_0.6_top_p_0.95"

CORRECT_SPLIT = "correct_base_solution"
INCORRECT_SPLIT = "incorrect_base_solution"
# Only these two splits are used; ``*_forced_answer`` and ``*_sanity`` folders are ignored.
SPLITS: tuple[str, ...] = (CORRECT_SPLIT, INCORRECT_SPLIT)
SETTING_BY_SPLIT: dict[str, str] = {CORRECT_SPLIT: "correct", INCORRECT_SPLIT: "incorrect"}

PROBLEM_FILE = "problem.json"
BASE_SOLUTION_FILE = "base_solution.json"
CHUNKS_FILE = "chunks_labeled.json"
# The only files the probe pipeline needs per trace (chunk_<i>/solutions.json are large and unused).
TRACE_FILES: tuple[str, ...] = (PROBLEM_FILE, BASE_SOLUTION_FILE, CHUNKS_FILE)

# The eight sentence function tags of the dataset's taxonomy (one per chunk in ``function_tags``).
FUNCTION_TAGS: tuple[str, ...] = (
    "problem_setup",
    "plan_generation",
    "fact_retrieval",
    "active_computation",
    "result_consolidation",
    "uncertainty_management",
    "self_checking",
    "final_answer_emission",
)
KNOWN_MODELS: tuple[str, ...] = ("deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b")

PROBLEM_DIR_PREFIX = "problem_"
_PROBLEM_DIR = re.compile(r"^problem_(?P<id>[A-Za-z0-9_-]+)$")


def setting_of(split: str) -> str:
    """``correct`` or ``incorrect`` for one of the two used splits; ValueError otherwise."""
    try:
        return SETTING_BY_SPLIT[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}") from None


def problem_dir_name(problem_id: str | int) -> str:
    return f"{PROBLEM_DIR_PREFIX}{problem_id}"


def problem_id_from_dir(name: str) -> str | None:
    """The ID in a ``problem_<ID>`` folder name, or None for any other name."""
    match = _PROBLEM_DIR.match(name)
    return match.group("id") if match else None


def problem_sort_key(problem_id: str) -> tuple[int, int | str]:
    """Numeric IDs sort numerically (``330`` before ``1591``), others after them by text."""
    return (0, int(problem_id)) if problem_id.isdigit() else (1, problem_id)


def split_dir(model: str, split: str, temperature_dir: str = TEMPERATURE_DIR) -> str:
    """``<model>/<temperature_dir>/<split>``: the folder holding one model's problems of one split."""
    return f"{model}/{temperature_dir}/{split}"


@dataclass(frozen=True, order=True)
class TraceRef:
    """Names one trace (one model's base solution of one problem in one split), not its content."""

    model: str
    split: str
    problem_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "problem_id", str(self.problem_id))

    @property
    def key(self) -> str:
        """The trace key used in every table: ``<model>/<split>/problem_<ID>``."""
        return f"{self.model}/{self.split}/{problem_dir_name(self.problem_id)}"

    @property
    def setting(self) -> str:
        return setting_of(self.split)

    @property
    def relative_dir(self) -> str:
        """The trace folder relative to the dataset root, in the Hub layout."""
        return self.relative_dir_for(TEMPERATURE_DIR)

    def relative_dir_for(self, temperature_dir: str) -> str:
        return f"{split_dir(self.model, self.split, temperature_dir)}/{problem_dir_name(self.problem_id)}"

    def sort_key(self) -> tuple:
        return (self.model, self.split, problem_sort_key(self.problem_id))

    @classmethod
    def from_key(cls, key: str) -> TraceRef:
        """Inverse of ``.key``; ValueError for a string that is not a trace key."""
        parts = key.split("/")
        problem_id = problem_id_from_dir(parts[-1]) if len(parts) == 3 else None
        if problem_id is None:
            raise ValueError(f"not a trace key (<model>/<split>/problem_<ID>): {key!r}")
        return cls(parts[0], parts[1], problem_id)
