"""Align annotated segments to ``reasoning_chain``: character spans on the exact string the model reads.

Why flexible: the annotated text is not always word-for-word the chain (whitespace, quotes and
punctuation differ), so both strings are reduced to their letters and digits (case-folded) with a
map back to the original characters, and each segment is searched in order from a cursor. A segment
that cannot be found after the previous one fails the whole chain with the segment's index, label
and opening words: the chain is recorded as a fault, never silently dropped or half-labelled.
Unlabelled text between sections (annotator noise such as a wrapping code fence) is not aligned:
it labels no token, and tokens outside every section are "not backtracking" anyway.
``coverage`` is the share of the chain's letters and digits that fall inside some segment (a chain
whose annotation skips most of the text would label its tokens wrongly as "not backtracking").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ta_platform.common.faults import DataFault

from .tags import Segment


@dataclass(frozen=True)
class AlignedSegment:
    label: str | None
    char_start: int
    char_end: int  # exclusive


@dataclass(frozen=True)
class Alignment:
    segments: list[AlignedSegment]
    coverage: float


def _significant(text: str) -> tuple[str, np.ndarray]:
    """Case-folded letters and digits of ``text`` and the original index of each."""
    keep = [(i, ch) for i, ch in enumerate(text) if ch.isalnum()]
    folded = "".join(ch.casefold() if len(ch.casefold()) == 1 else ch for _, ch in keep)
    return folded, np.array([i for i, _ in keep], dtype=np.int64)


def align_segments(item: str, chain: str, segments: list[Segment]) -> Alignment:
    """Character span of every segment in ``chain`` (in order); ``DataFault`` when one is not found."""
    if not isinstance(chain, str) or not chain.strip():
        raise DataFault(item, "reasoning_chain is empty", kind="empty")
    haystack, index = _significant(chain)
    cursor = 0
    aligned: list[AlignedSegment] = []
    covered = np.zeros(len(haystack), dtype=bool)
    for number, segment in enumerate(segments):
        needle, _ = _significant(segment.text)
        if not needle or segment.label is None:  # text between sections (e.g. a code fence) labels nothing
            continue
        found = haystack.find(needle, cursor)
        if found < 0:
            where = "anywhere" if haystack.find(needle) < 0 else f"after char {int(index[cursor - 1]) + 1 if cursor else 0}"
            raise DataFault(item, f"segment {number} ({segment.label or 'unlabelled'}) {segment.text[:60]!r} is not "
                                  f"in reasoning_chain {where}", kind="unalignable")
        last = found + len(needle) - 1
        aligned.append(AlignedSegment(segment.label, int(index[found]), int(index[last]) + 1))
        covered[found:last + 1] = True
        cursor = last + 1
    coverage = float(covered.mean()) if covered.size else 0.0
    return Alignment(aligned, coverage)
