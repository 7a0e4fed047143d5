"""Align the dataset's sentence chunks to character spans of ``full_cot``.

Why a cursor walk: chunks are in order and non-overlapping, so searching forward from the end of
the previous chunk is both fast and unambiguous (a repeated sentence such as "Wait." maps to its
own occurrence, not the first one). About 2% of real chunks were merged from short pieces with a
single space where the original text had newlines, so when the exact substring is not found we
retry with a pattern that treats any whitespace run as flexible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ta_platform.common.faults import DataFault
from ta_platform.rollouts.layout import CHUNKS_FILE


def chunks_file_of(trace_source: str) -> str:
    """The chunks file of a trace folder (local path or hf:// URL), named in alignment faults."""
    return f"{trace_source}/{CHUNKS_FILE}"


@dataclass(frozen=True)
class CharSpan:
    chunk_idx: int
    char_start: int
    char_end: int  # exclusive
    match: str  # "exact" | "whitespace"


def _flexible_pattern(chunk: str) -> re.Pattern[str]:
    words = chunk.split()
    return re.compile(r"\s+".join(re.escape(word) for word in words))


def align_chunks(
    full_cot: str,
    chunks: list[str],
    region: tuple[int, int],
    *,
    path: str = "chunks_labeled.json",
) -> list[CharSpan]:
    """Return one span per chunk, inside ``region`` (the think range), in order.

    Raises ``DataFault`` naming the first chunk that cannot be found after the previous one, or
    a gap between chunks that holds more than whitespace (which would mean a sentence is missing).
    """
    region_start, region_end = region
    cursor = region_start
    spans: list[CharSpan] = []
    for index, chunk in enumerate(chunks):
        if not chunk.strip():
            raise DataFault(path, f"chunk {index} is empty", kind="unaligned")
        start = full_cot.find(chunk, cursor, region_end)
        if start >= 0:
            span = CharSpan(index, start, start + len(chunk), "exact")
        else:
            found = _flexible_pattern(chunk).search(full_cot, cursor, region_end)
            if found is None:
                preview = chunk[:60].replace("\n", "\\n")
                raise DataFault(
                    path,
                    f"chunk {index} ({preview!r}) does not occur in full_cot after character {cursor}",
                    kind="unaligned",
                )
            span = CharSpan(index, found.start(), found.end(), "whitespace")
        gap = full_cot[cursor : span.char_start]
        if spans and gap.strip():
            preview = gap.strip()[:60].replace("\n", "\\n")
            raise DataFault(
                path,
                f"non-whitespace text {preview!r} between chunk {index - 1} and chunk {index}",
                kind="unaligned",
            )
        spans.append(span)
        cursor = span.char_end
    return spans
