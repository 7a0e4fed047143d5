"""Strict parsing of one trace folder into a ``Trace``.

Why strict: a silently wrong label (a NaN importance, a chunk list out of order, a solution that is
not the text the chunks came from) poisons every probe downstream and is found weeks later. Every
check raises ``DataFault(path_of_the_offending_file, problem, kind=...)`` so the loader can skip the
trace, record why, and keep the rest. The schema follows domain.md section 1; all 24 real traces in
``../shared/realdata`` carry every key below with these types, so nothing is optional.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ta_platform.common.faults import DataFault
from ta_platform.common.hashing import sha256_file
from ta_platform.rollouts.layout import (
    BASE_SOLUTION_FILE,
    CHUNKS_FILE,
    PROBLEM_FILE,
    SETTING_BY_SPLIT,
    TRACE_FILES,
    TraceRef,
)
from ta_platform.rollouts.think import THINK_CLOSE, THINK_OPEN, think_region
from ta_platform.rollouts.trace import Trace

# Fault kinds (short codes stored in the faults table).
MISSING_FILE = "missing_file"
MALFORMED_JSON = "malformed_json"
MISSING_KEY = "missing_key"
WRONG_TYPE = "wrong_type"
NON_FINITE = "non_finite"
EMPTY_THINK = "empty_think"
EMPTY_CHUNKS = "empty_chunks"
EMPTY_CHUNK_TEXT = "empty_chunk_text"
INCONSISTENT = "inconsistent"
NON_CONTIGUOUS = "non_contiguous"

PROBLEM_STR_KEYS: tuple[str, ...] = ("problem", "level", "type", "gt_solution", "gt_answer", "nickname")
BASE_SOLUTION_STR_KEYS: tuple[str, ...] = ("prompt", "solution", "full_cot", "answer")
CHUNK_FLOAT_KEYS: tuple[str, ...] = (
    "accuracy",
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "forced_importance_accuracy",
    "forced_importance_kl",
    "different_trajectories_fraction",
    "overdeterminedness",
)
CHUNK_KEYS: tuple[str, ...] = (
    "chunk",
    "chunk_idx",
    "function_tags",
    "depends_on",
    *CHUNK_FLOAT_KEYS,
    "summary",
)


def read_json_file(path: Path) -> Any:
    """Parse one JSON file; a missing, undecodable or malformed file is a ``DataFault``."""
    if not path.is_file():
        raise DataFault(path, f"required file {path.name} is missing", kind=MISSING_FILE)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFault(path, f"not UTF-8 text (byte {error.start})", kind=MALFORMED_JSON) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFault(
            path, f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}", kind=MALFORMED_JSON
        ) from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _require_dict(value: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFault(path, f"{what} must be a JSON object, got {_type_name(value)}", kind=WRONG_TYPE)
    return value


def _require_key(obj: dict[str, Any], key: str, path: Path, where: str) -> Any:
    if key not in obj:
        raise DataFault(path, f"{where}missing key {key!r}", kind=MISSING_KEY)
    return obj[key]


def _require_str(obj: dict[str, Any], key: str, path: Path, where: str = "") -> str:
    value = _require_key(obj, key, path, where)
    if not isinstance(value, str):
        raise DataFault(path, f"{where}field {key!r} must be a string, got {_type_name(value)}", kind=WRONG_TYPE)
    return value


def _require_number(obj: dict[str, Any], key: str, path: Path, where: str = "") -> float:
    value = _require_key(obj, key, path, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataFault(path, f"{where}field {key!r} must be a number, got {_type_name(value)}", kind=WRONG_TYPE)
    if not math.isfinite(value):
        raise DataFault(path, f"{where}field {key!r} is {value} (not finite)", kind=NON_FINITE)
    return value


def _require_str_list(obj: dict[str, Any], key: str, path: Path, where: str) -> list[str]:
    value = _require_key(obj, key, path, where)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataFault(path, f"{where}field {key!r} must be a list of strings", kind=WRONG_TYPE)
    return value


def validate_problem(problem: Any, path: Path) -> dict[str, Any]:
    problem = _require_dict(problem, path, PROBLEM_FILE)
    for key in PROBLEM_STR_KEYS:
        _require_str(problem, key, path)
    return problem


def validate_base_solution(base: Any, path: Path, split: str) -> dict[str, Any]:
    """Types, ``full_cot == prompt + solution``, a non-empty think region, and is_correct vs split."""
    base = _require_dict(base, path, BASE_SOLUTION_FILE)
    for key in BASE_SOLUTION_STR_KEYS:
        _require_str(base, key, path)
    is_correct = _require_key(base, "is_correct", path, "")
    if not isinstance(is_correct, bool):
        raise DataFault(path, f"field 'is_correct' must be a boolean, got {_type_name(is_correct)}", kind=WRONG_TYPE)
    if base["full_cot"] != base["prompt"] + base["solution"]:
        raise DataFault(path, "full_cot != prompt + solution", kind=INCONSISTENT)
    try:
        start, end = think_region(base["full_cot"])
    except ValueError:
        raise DataFault(path, f"full_cot has no {THINK_OPEN} tag", kind=EMPTY_THINK) from None
    if not base["full_cot"][start:end].strip():
        raise DataFault(path, f"empty think region (nothing between {THINK_OPEN} and {THINK_CLOSE})", kind=EMPTY_THINK)
    expected = SETTING_BY_SPLIT.get(split)
    if expected is not None and is_correct != (expected == "correct"):
        raise DataFault(path, f"is_correct={is_correct} in split {split}", kind=INCONSISTENT)
    return base


def validate_chunk(chunk: Any, position: int, path: Path) -> dict[str, Any]:
    """One chunk dict; every fault names the chunk (its list position) and the field."""
    where = f"chunk {position}: "
    if not isinstance(chunk, dict):
        raise DataFault(path, f"{where}must be a JSON object, got {_type_name(chunk)}", kind=WRONG_TYPE)
    text = _require_str(chunk, "chunk", path, where)
    if not text.strip():
        raise DataFault(path, f"{where}field 'chunk' is empty", kind=EMPTY_CHUNK_TEXT)
    chunk_idx = _require_key(chunk, "chunk_idx", path, where)
    if isinstance(chunk_idx, bool) or not isinstance(chunk_idx, int):
        raise DataFault(path, f"{where}field 'chunk_idx' must be an integer, got {_type_name(chunk_idx)}", kind=WRONG_TYPE)
    tags = _require_str_list(chunk, "function_tags", path, where)
    if not tags:
        raise DataFault(path, f"{where}field 'function_tags' is empty", kind=WRONG_TYPE)
    _require_str_list(chunk, "depends_on", path, where)
    for key in CHUNK_FLOAT_KEYS:
        _require_number(chunk, key, path, where)
    _require_str(chunk, "summary", path, where)
    return chunk


def validate_chunks(chunks: Any, path: Path) -> list[dict[str, Any]]:
    """A non-empty list of valid chunks whose ``chunk_idx`` runs 0..N-1 in order."""
    if not isinstance(chunks, list):
        raise DataFault(path, f"{CHUNKS_FILE} must be a JSON list, got {_type_name(chunks)}", kind=WRONG_TYPE)
    if not chunks:
        raise DataFault(path, "chunk list is empty", kind=EMPTY_CHUNKS)
    for position, chunk in enumerate(chunks):
        validate_chunk(chunk, position, path)
    for position, chunk in enumerate(chunks):
        if chunk["chunk_idx"] != position:
            raise DataFault(
                path,
                f"chunk_idx must run 0..{len(chunks) - 1} in order; list position {position} has "
                f"chunk_idx {chunk['chunk_idx']}",
                kind=NON_CONTIGUOUS,
            )
    return chunks


def parse_trace(ref: TraceRef, folder: str | Path, *, source: str | None = None) -> Trace:
    """Read and validate the three files of one trace folder; raise ``DataFault`` on the first problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFault(folder, f"trace folder for {ref.key} does not exist", kind=MISSING_FILE)
    problem_path = folder / PROBLEM_FILE
    base_path = folder / BASE_SOLUTION_FILE
    chunks_path = folder / CHUNKS_FILE
    problem = validate_problem(read_json_file(problem_path), problem_path)
    base_solution = validate_base_solution(read_json_file(base_path), base_path, ref.split)
    chunks = validate_chunks(read_json_file(chunks_path), chunks_path)
    return Trace(
        model=ref.model,
        split=ref.split,
        problem_id=ref.problem_id,
        problem=problem,
        base_solution=base_solution,
        chunks=chunks,
        files={name: sha256_file(folder / name) for name in TRACE_FILES},
        source=source if source is not None else str(folder),
    )
