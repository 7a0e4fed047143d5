"""Where traces come from: ONE switch from the user's spec to a source, and the loader over any source.

Why a protocol (``source_base.RolloutSource``): the pipeline asks a source for trace references and for a local folder holding the
three files of one trace; it never cares whether they came from a folder, the embedded generated
dataset or the Hugging Face Hub. ``source_from_spec`` is the single place that turns the user's
choice (``TA_DATA_SOURCE``) into a source, so switching data never touches pipeline code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.common.paths import storage_root
from ta_platform.rollouts.parsing import parse_trace
from ta_platform.rollouts.source_base import (
    LocalRolloutSource,
    ProblemIds,
    RolloutSource,
    hf_cache_dir,
)
from ta_platform.rollouts.trace import Trace

logger = logging.getLogger(__name__)

DATA_SOURCE_ENV = "TA_DATA_SOURCE"
DEFAULT_SPEC = "embedded"
HF_SCHEME = "hf://"
LOAD_STAGE = "load"


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
