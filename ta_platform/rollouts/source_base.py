"""What every rollout source shares: the protocol, the trace filters, the local folder source, the Hub cache dir.

Why apart from ``sources``: the Hub source reuses the local folder source (for its cache) and the
filters, while ``sources`` picks a source from the user's spec and so must know the Hub source; with
the shared pieces here, neither of those two modules imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ta_platform.common.faults import DataFault
from ta_platform.common.paths import storage_root
from ta_platform.rollouts.layout import (
    SPLITS,
    TEMPERATURE_DIR,
    TraceRef,
    problem_id_from_dir,
)
from ta_platform.rollouts.parsing import MISSING_FILE

HF_CACHE_ENV = "TA_HF_CACHE"

ProblemIds = None | str | Sequence[str | int]


@runtime_checkable
class RolloutSource(Protocol):
    """Anything that can list traces and hand out a local folder with a trace's three files."""

    def list_traces(
        self,
        models: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        problem_ids: ProblemIds = None,
    ) -> list[TraceRef]: ...

    def fetch(self, ref: TraceRef) -> Path: ...

    def describe(self) -> str: ...


def normalize_problem_ids(problem_ids: ProblemIds) -> set[str] | None:
    """None or ``"all"`` -> None (no filter); a list -> a set of ID strings (``330`` == ``"330"``)."""
    if problem_ids is None or (isinstance(problem_ids, str) and problem_ids == "all"):
        return None
    if isinstance(problem_ids, str):
        raise ValueError(f"problem_ids must be None, 'all' or a list of IDs, got {problem_ids!r}")
    return {str(problem_id) for problem_id in problem_ids}


def check_splits(splits: Sequence[str] | None) -> tuple[str, ...]:
    """The requested splits (default: both used splits); other split names are an error, not ignored."""
    if splits is None:
        return SPLITS
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"unsupported split(s) {unknown}; expected a subset of {list(SPLITS)}")
    return tuple(splits)


def sorted_refs(refs: Iterable[TraceRef]) -> list[TraceRef]:
    return sorted(set(refs), key=TraceRef.sort_key)


class LocalRolloutSource:
    """A folder in the Hub layout (a download, the real samples, or the embedded dataset)."""

    def __init__(self, root: str | os.PathLike[str], temperature_dir: str = TEMPERATURE_DIR):
        self.root = Path(root).expanduser().resolve()
        self.temperature_dir = temperature_dir

    def list_traces(self, models=None, splits=None, problem_ids: ProblemIds = None) -> list[TraceRef]:
        """Every ``problem_<ID>`` folder of the requested models/splits/problems that exists."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder {self.root} does not exist")
        wanted_ids = normalize_problem_ids(problem_ids)
        if models is None:
            models = sorted(p.name for p in self.root.iterdir() if (p / self.temperature_dir).is_dir())
        refs = []
        for model in models:
            for split in check_splits(splits):
                split_folder = self.root / model / self.temperature_dir / split
                if not split_folder.is_dir():
                    continue
                for entry in split_folder.iterdir():
                    problem_id = problem_id_from_dir(entry.name)
                    if entry.is_dir() and problem_id is not None and (wanted_ids is None or problem_id in wanted_ids):
                        refs.append(TraceRef(model, split, problem_id))
        return sorted_refs(refs)

    def folder_of(self, ref: TraceRef) -> Path:
        return self.root / ref.relative_dir_for(self.temperature_dir)

    def fetch(self, ref: TraceRef) -> Path:
        folder = self.folder_of(ref)
        if not folder.is_dir():
            raise DataFault(folder, f"trace folder for {ref.key} does not exist", kind=MISSING_FILE)
        return folder

    def locate(self, ref: TraceRef) -> str:
        return str(self.folder_of(ref))

    def describe(self) -> str:
        return f"local folder {self.root} ({self.temperature_dir})"


def hf_cache_dir() -> Path:
    """``TA_HF_CACHE`` or ``<storage>/hf_cache``: Hub downloads stay inside the platform's storage."""
    configured = os.environ.get(HF_CACHE_ENV)
    return Path(configured).expanduser().resolve() if configured else storage_root() / "hf_cache"
