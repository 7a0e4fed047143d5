"""The needle dataset: JSONL documents with character spans of their needles, generated or supplied.

Schema (one JSON object per line): ``doc_id`` (str, unique), ``text`` (str), ``needle_spans``
(list of ``[start, end)`` character offsets into ``text``), ``has_needle`` (bool, true iff there
are spans), ``split`` (train/val/test); optional ``group`` (the unit splits keep together; default
the doc id), ``family`` and ``source``.

Why generated from the platform's own traces: real reasoning text is the haystack the monitor must
work on, and inserting the needle ourselves gives exact offsets. The generator is deterministic
(``seed``; randomness from hashes of the seed and the trace key, not from iteration order) and
versioned (``dataset_name``, ``dataset_version`` name the file). Splits are by ``group`` = the
trace's problem: windows of one problem (and of its other traces, which share most of the text)
never straddle train and test.

A user-supplied file in the same schema replaces the generator with one switch (``TA_NEEDLE_SOURCE``
or the ``source`` setting); every line is validated and a bad one is skipped with a fault naming the
file, line and problem (offsets outside the text, overlapping spans, missing keys...). Faults of the
whole file (not UTF-8, empty, a runaway line, a doc_id given twice) refuse it: see ``read_jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ta_platform.common.atomic import atomic_write_text
from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.common.text_files import read_text_strict
from ta_platform.needle.families import FAMILIES
from ta_platform.probing.splits import SPLIT_NAMES, problem_level_split

SOURCE_ENV = "TA_NEEDLE_SOURCE"
REQUIRED_KEYS = ("doc_id", "text", "needle_spans", "has_needle", "split")
STAGE = "needle_dataset"


@dataclass(frozen=True)
class NeedleDatasetConfig:
    """Everything that decides the generated documents (recorded with the file)."""

    dataset_name: str = "needle_rollouts"
    dataset_version: str = "v1"
    seed: int = 0
    docs_per_trace: int = 2
    window_chars: int = 420  # haystack length before the needle (cut at line/sentence ends)
    needle_rate: float = 0.5  # share of documents that get a needle
    families: tuple[str, ...] = tuple(FAMILIES)
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    max_traces: int = 0  # 0 = every trace the rollouts source lists

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown needle families {unknown}; known: {sorted(FAMILIES)}")
        if not 0.0 < self.needle_rate < 1.0:
            raise ValueError(f"needle_rate must be in (0, 1) so both classes exist, not {self.needle_rate}")

    @property
    def file_name(self) -> str:
        return f"{self.dataset_name}_{self.dataset_version}.jsonl"

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class NeedleDocument:
    doc_id: str
    text: str
    needle_spans: tuple[tuple[int, int], ...]
    has_needle: bool
    split: str
    group: str = ""
    family: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "text": self.text, "needle_spans": [list(s) for s in self.needle_spans],
                "has_needle": self.has_needle, "split": self.split, "group": self.group or self.doc_id,
                "family": self.family, "source": self.source}


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def haystack_windows(text: str, n_windows: int, window_chars: int, rng: np.random.Generator) -> list[str]:
    """Up to ``n_windows`` non-overlapping windows of ``text`` starting at line starts, ending at a line
    or sentence end near ``window_chars`` (whole sentences: a needle then sits between sentences)."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)]
    usable = len(text) - window_chars
    candidates = [s for s in starts if s <= usable and text[s:s + 1].strip()]
    windows: list[str] = []
    taken_until = -1
    for start in sorted(rng.permutation(candidates)[: n_windows * 4].tolist()):
        if len(windows) == n_windows or start < taken_until:
            continue
        end = _sentence_end(text, start + window_chars)
        window = text[start:end].strip()
        if len(window) >= window_chars // 2:
            windows.append(window)
            taken_until = end
    return windows


def _sentence_end(text: str, at: int) -> int:
    for i in range(at, min(len(text), at + 200)):
        if text[i] == "\n" or (text[i] == "." and (i + 1 == len(text) or text[i + 1].isspace())):
            return i + 1
    return min(len(text), at)


def trim_to(text: str, max_chars: int) -> str:
    """``text`` cut after its last line or sentence end at or before ``max_chars`` (whole text if none)."""
    cut = max((i + 1 for i, ch in enumerate(text[:max_chars])
               if ch == "\n" or (ch == "." and (i + 1 == len(text) or text[i + 1] in " \n"))), default=0)
    return text[:cut].rstrip() if cut > max_chars // 2 else text


def insert_needle(haystack: str, needle: str, rng: np.random.Generator) -> tuple[str, tuple[int, int]]:
    """Insert ``needle`` at a sentence or line boundary of ``haystack``; return text and the needle's span."""
    bounds = [i + 1 for i, ch in enumerate(haystack[:-1])
              if ch == "\n" or (ch == "." and haystack[i + 1] in " \n")]
    cut = int(rng.choice(bounds)) if bounds else len(haystack)
    before, after = haystack[:cut], haystack[cut:]
    sep_before = "" if before.endswith((" ", "\n")) or not before else " "
    sep_after = "" if after.startswith((" ", "\n")) or not after else " "
    start = len(before) + len(sep_before)
    text = before + sep_before + needle + sep_after + after
    return text, (start, start + len(needle))


def generate_documents(traces: Iterable[Any], config: NeedleDatasetConfig) -> list[NeedleDocument]:
    """Documents from the think text of ``traces`` (objects with ``key``, ``problem_id``, ``think_text``).

    Deterministic in (config, trace keys and texts); traces are processed in key order.
    """
    ordered = sorted(traces, key=lambda t: t.key)
    if config.max_traces:
        ordered = ordered[: config.max_traces]
    docs: list[NeedleDocument] = []
    for trace in ordered:
        rng = _rng(config.seed, "windows", trace.key)
        for w, window in enumerate(haystack_windows(trace.think_text, config.docs_per_trace, config.window_chars, rng)):
            doc_id = f"{trace.key}#w{w}"
            doc_rng = _rng(config.seed, "needle", doc_id)
            if doc_rng.random() < config.needle_rate:
                family = FAMILIES[config.families[int(doc_rng.integers(len(config.families)))]]
                needle = family.render(doc_rng)
                # the haystack gives up as many characters as the needle adds: document length must not
                # tell a needle document from a clean one (the position baseline would read it)
                haystack = trim_to(window, len(window) - len(needle) - 1)
                text, span = insert_needle(haystack, needle, doc_rng)
                docs.append(NeedleDocument(doc_id, text, (span,), True, "", str(trace.problem_id), family.name,
                                           trace.key))
            else:
                docs.append(NeedleDocument(doc_id, window, (), False, "", str(trace.problem_id), "", trace.key))
    assignment = problem_level_split([d.group for d in docs], config.seed, config.split_fractions)
    return [NeedleDocument(d.doc_id, d.text, d.needle_spans, d.has_needle, assignment[d.group], d.group, d.family,
                           d.source) for d in docs]


def write_jsonl(path: str | os.PathLike[str], docs: Sequence[NeedleDocument]) -> Path:
    """Atomic write, one document per line, keys sorted (byte-identical for identical documents)."""
    lines = [json.dumps(d.as_json(), sort_keys=True, ensure_ascii=False) for d in docs]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def validate_record(record: Any, where: str) -> NeedleDocument:
    """One parsed JSON line -> a document; ``DataFault`` naming ``where`` (file:line) and the problem."""
    if not isinstance(record, dict):
        raise DataFault(where, f"expected a JSON object, got {type(record).__name__}", kind="invalid")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise DataFault(where, f"missing key(s) {missing} (required: {list(REQUIRED_KEYS)})", kind="missing_key")
    doc_id, text, spans, has_needle, split = (record[k] for k in REQUIRED_KEYS)
    if not isinstance(doc_id, str) or not doc_id:
        raise DataFault(where, f"doc_id must be a non-empty string, got {doc_id!r}", kind="invalid")
    where = f"{where} (doc {doc_id})"
    if not isinstance(text, str) or not text.strip():
        raise DataFault(where, "text must be a non-empty string", kind="invalid")
    if not isinstance(has_needle, bool):
        raise DataFault(where, f"has_needle must be true or false, got {has_needle!r}", kind="invalid")
    if split not in SPLIT_NAMES:
        raise DataFault(where, f"split must be one of {list(SPLIT_NAMES)}, got {split!r}", kind="invalid")
    if not isinstance(spans, list) or not all(isinstance(s, list | tuple) and len(s) == 2
                                              and all(isinstance(x, int) and not isinstance(x, bool) for x in s)
                                              for s in spans):
        raise DataFault(where, f"needle_spans must be a list of [start, end] integer pairs, got {spans!r}",
                        kind="invalid")
    pairs = sorted((int(s), int(e)) for s, e in spans)
    for start, end in pairs:
        if not 0 <= start < end <= len(text):
            raise DataFault(where, f"needle span [{start}, {end}) is empty or outside the text (length {len(text)})",
                            kind="span_outside_text")
    for (s1, e1), (s2, e2) in zip(pairs, pairs[1:], strict=False):
        if s2 < e1:
            raise DataFault(where, f"needle spans [{s1}, {e1}) and [{s2}, {e2}) overlap", kind="overlapping_spans")
    if has_needle != bool(pairs):
        raise DataFault(where, f"has_needle is {has_needle} but the document has {len(pairs)} needle span(s)",
                        kind="invalid")
    group = record.get("group", doc_id)
    return NeedleDocument(doc_id, text, tuple(pairs), has_needle, split, str(group), str(record.get("family", "")),
                          str(record.get("source", "")))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (write a number, or leave the key out)")


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[NeedleDocument], list[FaultRecord]]:
    """Every valid document of the file, and a fault per bad line (skipped; the rest still load).

    Per-line faults (not JSON, NaN, missing key, wrong type, span outside the text...) are recorded
    and the line skipped; so is a group spread over several splits (all its documents: they would
    leak between splits). Whole-file faults raise ``DataFault`` naming the file and line: not UTF-8,
    empty, a line over ``MAX_LINE_BYTES``, a ``doc_id`` given twice (which document is meant cannot
    be told). A missing file raises ``FileNotFoundError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"needle dataset {path} does not exist")
    text = read_text_strict(path, what="needle JSONL file")
    docs: list[NeedleDocument] = []
    faults: list[FaultRecord] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            try:
                record = json.loads(line, parse_constant=_no_constant)
            except json.JSONDecodeError as error:
                raise DataFault(where, f"not valid JSON ({error.msg} at column {error.colno})", kind="invalid_json") from None
            except ValueError as error:  # NaN / Infinity: Python reads them, JSON has no such value
                raise DataFault(where, str(error), kind="invalid_json") from None
            doc = validate_record(record, where)
            if doc.doc_id in seen:  # the file is ambiguous, not one line bad: refuse it whole
                raise DataFault(str(path), f"line {number} (doc {doc.doc_id}): duplicate doc_id, first at line "
                                f"{seen[doc.doc_id]}", kind="duplicate")
            seen[doc.doc_id] = number
            docs.append(doc)
        except DataFault as fault:
            if fault.kind == "duplicate":
                raise
            faults.append(FaultRecord.from_fault(STAGE, where, fault))
    splits_of: dict[str, set[str]] = {}
    for doc in docs:
        splits_of.setdefault(doc.group, set()).add(doc.split)
    leaking = {group for group, splits in splits_of.items() if len(splits) > 1}
    for group in sorted(leaking):
        fault = DataFault(str(path), f"group {group!r} has documents in splits {sorted(splits_of[group])}; "
                                     "its documents are skipped (they would leak between splits)", kind="split_leak")
        faults.append(FaultRecord.from_fault(STAGE, f"group:{group}", fault))
    return [d for d in docs if d.group not in leaking], faults


def dataset_summary(docs: Sequence[NeedleDocument]) -> dict[str, Any]:
    """Counts per split and family: what the asset shows and the tests check."""
    summary: dict[str, Any] = {"n_docs": len(docs), "n_with_needle": sum(d.has_needle for d in docs)}
    for split in SPLIT_NAMES:
        in_split = [d for d in docs if d.split == split]
        summary[f"n_{split}"] = len(in_split)
        summary[f"n_{split}_with_needle"] = sum(d.has_needle for d in in_split)
    summary["families"] = {name: sum(d.family == name for d in docs) for name in sorted({d.family for d in docs if d.family})}
    return summary
