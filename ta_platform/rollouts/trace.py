"""The ``Trace`` record handed from the rollouts layer to the anchors layer (see ARCHITECTURE.md).

Why a plain dataclass of parsed JSON: downstream code needs the dataset's own fields unchanged
(``chunk`` strings, importances), plus provenance (file hashes, where the trace came from).
A ``Trace`` only exists after ``parsing.parse_trace`` validated it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ta_platform.rollouts.layout import TraceRef, setting_of
from ta_platform.rollouts.think import think_region


@dataclass(frozen=True)
class Trace:
    model: str
    split: str
    problem_id: str
    problem: dict[str, Any]
    base_solution: dict[str, Any]
    chunks: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    source: str = ""  # local folder or hf:// URL the files came from

    @property
    def ref(self) -> TraceRef:
        return TraceRef(self.model, self.split, self.problem_id)

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def setting(self) -> str:
        return setting_of(self.split)

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    @property
    def full_cot(self) -> str:
        return self.base_solution["full_cot"]

    @property
    def think_text(self) -> str:
        """The characters between ``<think>`` and ``</think>`` (or the end) of ``full_cot``."""
        start, end = think_region(self.full_cot)
        return self.full_cot[start:end]

    @property
    def chunk_texts(self) -> list[str]:
        return [chunk["chunk"] for chunk in self.chunks]
