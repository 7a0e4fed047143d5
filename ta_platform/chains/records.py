"""Chain records -> the chains table: parse, align, keep or record a fault, one record at a time.

Why one record at a time: a record missing a key, with an unknown label, unbalanced tags, an empty
chain or an annotation that does not align is a ``DataFault`` of that record only; it is recorded
(``FaultRecord`` naming the task id and the problem) and the rest is processed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.common.hashing import stable_json_hash
from ta_platform.common.text_files import MAX_JSON_LINE_BYTES, read_text_strict

from .alignment import align_segments
from .tags import parse_annotated

REQUIRED_KEYS = ("task_id", "problem", "reasoning_chain", "annotated_chain")
SOURCE_ENV = "TA_CHAINS_SOURCE"
EMBEDDED = "embedded"
STAGE = "backtracking:chains"
CHAIN_COLUMNS = ["chain_id", "task_id", "problem", "text", "n_sections", "n_backtracking", "coverage", "spans",
                 "content_hash"]


def chains_source(spec: str | None = None) -> str:
    """``spec``, else ``$TA_CHAINS_SOURCE``, else ``embedded``: the one switch for the study's data."""
    return spec or os.environ.get(SOURCE_ENV, "") or EMBEDDED


def read_records(path: str | os.PathLike[str]) -> list[Any]:
    """The records of an ``all_annotated_chains.json`` file (a JSON list); errors name the file.

    Whole-file faults raise (``DataFault``, a ``ValueError``): not UTF-8, empty, a runaway line, not
    JSON, not a list, no record, or a ``task_id`` given to two records (which one is meant cannot be
    told, so the file is refused rather than a chain silently dropped). Faults of one record (missing
    key, wrong type, unknown label...) are left to ``build_chain_table``, which records and skips it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: chains file not found ({SOURCE_ENV} must be 'embedded' or a path to "
                                "an all_annotated_chains.json file)")
    text = read_text_strict(path, what="chains file", max_line_bytes=MAX_JSON_LINE_BYTES)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFault(str(path), f"not valid JSON (line {error.lineno} column {error.colno}: {error.msg})",
                        kind="invalid_json") from None
    if not isinstance(records, list):
        raise DataFault(str(path), f"expected a JSON list of chain records, got {type(records).__name__}",
                        kind="invalid")
    if not records:
        raise DataFault(str(path), "the list of chain records is empty", kind="empty")
    first: dict[str, int] = {}
    for number, record in enumerate(records):
        task_id = record.get("task_id") if isinstance(record, Mapping) else None
        if isinstance(task_id, str | int) and not isinstance(task_id, bool):
            if str(task_id) in first:
                raise DataFault(str(path), f"record {number} (chain {str(task_id)!r}): duplicate task_id, also record "
                                f"{first[str(task_id)]}", kind="duplicate")
            first[str(task_id)] = number
    return records


@dataclass
class ChainTable:
    chains: pd.DataFrame  # one row per kept chain (CHAIN_COLUMNS); ``spans`` is JSON [[label, start, end], ...]
    faults: list[FaultRecord]
    n_records: int


def build_chain_table(records: Sequence[Any], *, source: str = "<records>",
                      min_coverage: float = 0.5) -> ChainTable:
    """Parse and align every record; faulty ones (named by task id) are recorded and skipped.

    ``min_coverage``: a chain whose sections cover less than this share of its letters and digits is
    a fault (``low_coverage``): its unannotated text would be labelled "not backtracking" unseen.
    """
    rows, faults, seen = [], [], set()
    for number, record in enumerate(records):
        item = _item(record, number)
        try:
            row = _chain_row(item, record, min_coverage)
            if row["chain_id"] in seen:
                raise DataFault(item, "duplicate task_id", kind="duplicate")
            seen.add(row["chain_id"])
            rows.append(row)
        except DataFault as fault:
            faults.append(FaultRecord(STAGE, item, source, fault.kind, fault.problem))
    chains = pd.DataFrame(rows, columns=CHAIN_COLUMNS)
    return ChainTable(chains, faults, len(records))


def _item(record: Any, number: int) -> str:
    task_id = record.get("task_id") if isinstance(record, Mapping) else None
    return str(task_id) if isinstance(task_id, str | int) and str(task_id) else f"record[{number}]"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chain_row(item: str, record: Any, min_coverage: float) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise DataFault(item, f"record is a {type(record).__name__}, not an object", kind="invalid")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise DataFault(item, f"record lacks key(s) {missing} (required: {list(REQUIRED_KEYS)})", kind="missing_key")
    wrong = [f"{key} is {_shown(record[key])} ({type(record[key]).__name__})" for key in REQUIRED_KEYS
             if not isinstance(record[key], str)]
    if wrong:
        raise DataFault(item, f"wrong type: {'; '.join(wrong)}; expected strings", kind="invalid")
    text = record["reasoning_chain"]
    if not text.strip():
        raise DataFault(item, "reasoning_chain is empty", kind="empty")
    segments = parse_annotated(item, record["annotated_chain"])
    alignment = align_segments(item, text, segments)
    if alignment.coverage < min_coverage:
        raise DataFault(item, f"the annotated sections cover {alignment.coverage:.1%} of reasoning_chain "
                              f"(< {min_coverage:.0%}): unannotated text cannot be labelled", kind="low_coverage")
    spans = [[s.label, s.char_start, s.char_end] for s in alignment.segments]
    return {"chain_id": item, "task_id": str(record["task_id"]), "problem": record["problem"], "text": text,
            "n_sections": len(spans), "n_backtracking": sum(s[0] == "backtracking" for s in spans),
            "coverage": alignment.coverage, "spans": json.dumps(spans),
            "content_hash": stable_json_hash(text)[:16]}
