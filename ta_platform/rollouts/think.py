"""Where the thinking is inside a solution's ``full_cot``: the text between ``<think>`` and ``</think>``.

Why its own module: both the ``Trace`` record (its ``think_text``) and the strict parser need it,
and the parser builds ``Trace`` objects; keeping the rule here lets both import it without importing
each other.
"""

from __future__ import annotations

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def think_region(full_cot: str) -> tuple[int, int]:
    """Character range of the thinking: after the first ``<think>``, up to ``</think>`` or the end.

    Raises ValueError when there is no ``<think>`` tag at all.
    """
    open_at = full_cot.find(THINK_OPEN)
    if open_at < 0:
        raise ValueError(f"no {THINK_OPEN} tag")
    start = open_at + len(THINK_OPEN)
    close_at = full_cot.find(THINK_CLOSE, start)
    return start, (len(full_cot) if close_at < 0 else close_at)
