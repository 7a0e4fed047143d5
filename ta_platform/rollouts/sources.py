"""Where traces come from: one protocol, a local folder source, the Hub source, and ONE switch.

Why a protocol: the pipeline asks a source for trace references and for a local folder holding the
three files of one trace; it never cares whether they came from a folder, the embedded generated
dataset or the Hugging Face Hub. ``source_from_spec`` is the single place that turns the user's
choice (``TA_DATA_SOURCE``) into a source, so switching data never touches pipeline code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.common.paths import storage_root
from ta_platform.rollouts.layout import (
    SPLITS,
    TEMPERATURE_DIR,
    TraceRef,
    problem_id_from_dir,
)
from ta_platform.rollouts.parsing import MISSING_FILE, parse_trace
from ta_platform.rollouts.trace import Trace

logger = logging.getLogger(__name__)

DATA_SOURCE_ENV = "TA_DATA_SOURCE"
HF_CACHE_ENV = "TA_HF_CACHE"
DEFAULT_SPEC = "embedded"
HF_SCHEME = "hf://"
LOAD_STAGE = "load"

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


def load_traces(
    source: RolloutSource,
    models: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    problem_ids: ProblemIds = None,
) -> tuple[list[Trace], list[FaultRecord]]:
    """Load every requested trace; a broken one is skipped and recorded, the rest still load.

    Only ``DataFault`` is skipped: configuration and network errors still raise, because silently
    loading nothing is worse than stopping.
    """
    traces: list[Trace] = []
    faults: list[FaultRecord] = []
    for ref in source.list_traces(models=models, splits=splits, problem_ids=problem_ids):
        try:
            folder = source.fetch(ref)
            locate = getattr(source, "locate", None)
            traces.append(parse_trace(ref, folder, source=locate(ref) if locate else None))
        except DataFault as fault:
            logger.warning("skipping trace %s: %s", ref.key, fault)
            faults.append(FaultRecord.from_fault(LOAD_STAGE, ref.key, fault))
    return traces, faults


def hf_cache_dir() -> Path:
    """``TA_HF_CACHE`` or ``<storage>/hf_cache``: Hub downloads stay inside the platform's storage."""
    configured = os.environ.get(HF_CACHE_ENV)
    return Path(configured).expanduser().resolve() if configured else storage_root() / "hf_cache"


def embedded_dataset_dir() -> Path:
    return storage_root() / "data" / "embedded"


def parse_hf_spec(spec: str) -> tuple[str, str]:
    """``hf://<repo_id>[@revision]`` -> (repo_id, revision); revision defaults to ``main``."""
    body = spec[len(HF_SCHEME) :]
    repo_id, _, revision = body.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"bad Hub spec {spec!r}: expected hf://<owner>/<name>[@revision]")
    return repo_id, revision or "main"


def source_from_spec(spec: str | None = None) -> RolloutSource:
    """The one data switch: ``embedded`` (default), a local folder path, or ``hf://<repo_id>[@rev]``.

    ``embedded`` is generated under ``<storage>/data/embedded`` on first use, so a fresh checkout
    runs end to end with no network. The Hub endpoint comes from ``HF_ENDPOINT`` when set.
    """
    spec = (spec or DEFAULT_SPEC).strip()
    if spec == DEFAULT_SPEC:
        from ta_platform.rollouts.generator import ensure_dataset

        return LocalRolloutSource(ensure_dataset(embedded_dataset_dir()))
    if spec.startswith(HF_SCHEME):
        from ta_platform.rollouts.hub_source import HubRolloutSource

        repo_id, revision = parse_hf_spec(spec)
        return HubRolloutSource(repo_id=repo_id, revision=revision, cache_dir=hf_cache_dir())
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"data source {spec!r} is neither 'embedded', an hf://<repo_id>[@revision] spec, nor an existing folder"
        )
    return LocalRolloutSource(folder)


def source_from_env() -> RolloutSource:
    """``source_from_spec(TA_DATA_SOURCE)``; unset means the embedded dataset."""
    return source_from_spec(os.environ.get(DATA_SOURCE_ENV, DEFAULT_SPEC))


def __getattr__(name: str):
    # ``from ta_platform.rollouts.sources import HubRolloutSource`` works without importing
    # huggingface_hub for users of local data.
    if name == "HubRolloutSource":
        from ta_platform.rollouts.hub_source import HubRolloutSource

        return HubRolloutSource
    raise AttributeError(name)
