"""Inline tags of ``annotated_chain``: ``["label"] text ["end-section"]`` -> ordered segments.

Why strict: the labels are the whole target of the study, so a tag the parser does not know, a
section opened inside another, an ``end-section`` with nothing open or a section left open is a
fault of that record (``DataFault`` naming the task id and the position), never a guess. Text
between sections (whitespace in the real data) is kept as an unlabelled segment so the rebuilt text
is the annotated text minus its tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ta_platform.common.faults import DataFault

LABELS = ("initializing", "deduction", "adding-knowledge", "example-testing", "uncertainty-estimation",
          "backtracking")
END_TAG = "end-section"
BACKTRACKING = "backtracking"
TAG = re.compile(r'\["([^"\]]*)"\]')


@dataclass(frozen=True)
class Segment:
    """One piece of the rebuilt text: a labelled section (``label``) or text between sections (None)."""

    label: str | None
    text: str


def parse_annotated(item: str, annotated: str, labels: tuple[str, ...] = LABELS) -> list[Segment]:
    """Segments of ``annotated`` in order; ``DataFault`` for unknown labels or unbalanced tags."""
    if not isinstance(annotated, str) or not annotated.strip():
        raise DataFault(item, "annotated_chain is empty", kind="empty")
    segments: list[Segment] = []
    open_label: str | None = None
    open_at = 0
    cursor = 0
    for match in TAG.finditer(annotated):
        name, text = match.group(1), annotated[cursor:match.start()]
        if name == END_TAG:
            if open_label is None:
                raise DataFault(item, f"unbalanced tags: [\"{END_TAG}\"] at char {match.start()} closes no section",
                                kind="unbalanced_tags")
            segments.append(Segment(open_label, text.strip()))
            open_label = None
        else:
            if name not in labels:
                raise DataFault(item, f"unknown label {name!r} at char {match.start()} (known: {', '.join(labels)})",
                                kind="unknown_label")
            if open_label is not None:
                raise DataFault(item, f"unbalanced tags: [\"{name}\"] at char {match.start()} opens a section while "
                                      f"[\"{open_label}\"] (opened at char {open_at}) is still open",
                                kind="unbalanced_tags")
            if text.strip():
                segments.append(Segment(None, text.strip()))
            open_label, open_at = name, match.start()
        cursor = match.end()
    if open_label is not None:
        raise DataFault(item, f"unbalanced tags: [\"{open_label}\"] opened at char {open_at} is never closed",
                        kind="unbalanced_tags")
    if annotated[cursor:].strip():
        segments.append(Segment(None, annotated[cursor:].strip()))
    if not any(segment.label for segment in segments):
        raise DataFault(item, "annotated_chain has no labelled section", kind="empty")
    return [segment for segment in segments if segment.text]


def rebuilt_text(segments: list[Segment]) -> str:
    """The annotated text without its tags (segments joined by one space)."""
    return " ".join(segment.text for segment in segments)
