"""The rollout files of one trace (``chunk_<i>/solutions.json``): their paths, their records, and
which trace the label verification reads by default.

Why apart from ``layout``: the probe pipeline never reads these files (they are ~90% of the Hub
dataset's 91 GB); only the label verification does, for ONE trace. Keeping their names, their
parsing and the default choice here lets the generator (which writes them), the Hub source (which
downloads them) and the verification (which reads them) agree without the pipeline knowing.

A record holds ``chunk_removed, prefix_without_chunk, chunk_resampled, rollout, full_cot, answer,
is_correct``; a failed rollout carries ``error`` instead and is not counted (as in the dataset).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ta_platform.common.faults import DataFault
from ta_platform.rollouts.layout import CORRECT_SPLIT, KNOWN_MODELS, TraceRef, problem_sort_key

SOLUTIONS_FILE = "solutions.json"
CHUNK_DIR_PREFIX = "chunk_"
_CHUNK_DIR = re.compile(r"^chunk_(?P<i>\d+)$")
ROLLOUT_KEYS: tuple[str, ...] = (
    "chunk_removed", "prefix_without_chunk", "chunk_resampled", "rollout", "full_cot", "answer", "is_correct",
)
# The trace verified when the user names none: the paper's primary model, its correct base solution.
DEFAULT_VERIFY_MODEL = KNOWN_MODELS[0]
DEFAULT_VERIFY_SPLIT = CORRECT_SPLIT


def chunk_dir_name(chunk_idx: int) -> str:
    return f"{CHUNK_DIR_PREFIX}{chunk_idx}"


def solutions_relpath(chunk_idx: int) -> str:
    """``chunk_<i>/solutions.json``, relative to the trace folder."""
    return f"{chunk_dir_name(chunk_idx)}/{SOLUTIONS_FILE}"


def chunk_idx_from_dir(name: str) -> int | None:
    match = _CHUNK_DIR.match(name)
    return int(match.group("i")) if match else None


def local_solution_files(trace_folder: str | os.PathLike[str]) -> dict[int, Path]:
    """chunk index -> ``chunk_<i>/solutions.json`` for every chunk folder of a trace that holds one."""
    folder = Path(trace_folder)
    if not folder.is_dir():
        return {}
    found = {}
    for entry in folder.iterdir():
        idx = chunk_idx_from_dir(entry.name)
        if idx is not None and (entry / SOLUTIONS_FILE).is_file():
            found[idx] = entry / SOLUTIONS_FILE
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Rollout:
    """What the importances need from one counted rollout."""

    chunk_removed: str
    chunk_resampled: str
    is_correct: bool


@dataclass(frozen=True)
class ChunkRollouts:
    """The counted rollouts of one chunk and how many records were left out (failed or incomplete)."""

    chunk_idx: int
    rollouts: tuple[Rollout, ...]
    n_failed: int
    path: str


def parse_solutions(chunk_idx: int, payload: object, path: str) -> ChunkRollouts:
    """Records -> counted rollouts. Failed records (``error``, or no ``is_correct``) are counted apart;
    anything that is not a list of records is a ``DataFault`` naming the file."""
    if not isinstance(payload, list):
        raise DataFault(path, f"expected a list of rollout records, got {type(payload).__name__}")
    rollouts, failed = [], 0
    for n, record in enumerate(payload):
        if not isinstance(record, dict):
            raise DataFault(path, f"record {n} is a {type(record).__name__}, not an object")
        if "error" in record or not isinstance(record.get("is_correct"), bool):
            failed += 1
            continue
        removed, resampled = record.get("chunk_removed"), record.get("chunk_resampled")
        if not isinstance(removed, str) or not isinstance(resampled, str):
            raise DataFault(path, f"record {n}: chunk_removed and chunk_resampled must be strings")
        rollouts.append(Rollout(removed, resampled, record["is_correct"]))
    return ChunkRollouts(chunk_idx, tuple(rollouts), failed, path)


def read_solutions(chunk_idx: int, path: str | os.PathLike[str], shown_as: str | None = None) -> ChunkRollouts:
    """Read one ``solutions.json``; malformed JSON is a ``DataFault`` naming the file."""
    shown = shown_as or str(path)
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataFault(shown, f"unreadable rollouts file: {error}") from None
    return parse_solutions(chunk_idx, payload, shown)


def default_verify_ref(refs: Iterable[TraceRef]) -> TraceRef | None:
    """The trace verified by default: the lowest problem id of the primary model's correct split
    (``deepseek-r1-distill-qwen-14b``); else the first trace. The embedded generator writes rollouts
    for exactly this trace, so the default verification runs offline."""
    refs = sorted(set(refs), key=TraceRef.sort_key)
    preferred = [r for r in refs if (r.model, r.split) == (DEFAULT_VERIFY_MODEL, DEFAULT_VERIFY_SPLIT)]
    pool = preferred or refs
    return min(pool, key=lambda r: (problem_sort_key(r.problem_id), r.model, r.split)) if pool else None
