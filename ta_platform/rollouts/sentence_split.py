"""The sentence split rule that produced the dataset's chunks.

Why it exists: the dataset's own ``chunk`` strings are preferred, but the generator must write chunks
that the real rule would produce, and checks need to re-split a think text. The rule (domain.md
section 1) reproduces every real chunk: scan characters; cut after ``.``, ``?`` or ``!`` when the
next character is a space or newline, and at every blank line (``\\n\\n``); strip the pieces; keep the
trailing remainder; then merge any piece shorter than 10 characters into the next one with a single
space (into the previous one if it is the last).
"""

from __future__ import annotations

SENTENCE_END = frozenset(".?!")
CUT_FOLLOWERS = frozenset(" \n")
BLANK_LINE = "\n\n"
MIN_CHUNK_CHARS = 10


def raw_pieces(think_text: str) -> list[str]:
    """The stripped, non-empty pieces before short ones are merged."""
    pieces: list[str] = []
    start = 0
    i = 0
    n = len(think_text)
    while i < n:
        if think_text.startswith(BLANK_LINE, i):
            pieces.append(think_text[start:i])
            i += len(BLANK_LINE)
            start = i
            continue
        if think_text[i] in SENTENCE_END and i + 1 < n and think_text[i + 1] in CUT_FOLLOWERS:
            pieces.append(think_text[start : i + 1])
            start = i + 1
        i += 1
    pieces.append(think_text[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def merge_short_pieces(pieces: list[str], min_chars: int = MIN_CHUNK_CHARS) -> list[str]:
    """Join pieces shorter than ``min_chars`` to the next piece (the previous one when last)."""
    merged: list[str] = []
    pending = ""
    for piece in pieces:
        if pending:
            piece = f"{pending} {piece}"
            pending = ""
        if len(piece) < min_chars:
            pending = piece
            continue
        merged.append(piece)
    if pending:
        if merged:
            merged[-1] = f"{merged[-1]} {pending}"
        else:
            merged.append(pending)
    return merged


def split_sentences(think_text: str) -> list[str]:
    """Split a think text (the part between ``<think>`` and ``</think>``) into sentence chunks."""
    return merge_short_pieces(raw_pieces(think_text))
