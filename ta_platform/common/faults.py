"""Data faults: errors that name the file and the problem, and the skip-and-record policy.

A ``DataFault`` is raised for bad input (malformed JSON, missing key, wrong type, unalignable
sentence...). Pipelines that process many traces catch it per trace, record a ``FaultRecord`` and
go on, so one broken file never loses the rest of the dataset; the records end up in DuckDB and
are reported by an asset check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class DataFault(ValueError):
    """Bad input data. ``str(fault)`` reads ``<file>: <problem>``."""

    def __init__(self, path: str, problem: str, *, kind: str = "invalid"):
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class FaultRecord:
    """One skipped item, as stored in the ``faults`` table."""

    stage: str  # e.g. "load", "align", "extract"
    item: str  # trace key, e.g. "model/split/problem_330"
    path: str
    kind: str
    problem: str

    @classmethod
    def from_fault(cls, stage: str, item: str, fault: DataFault) -> FaultRecord:
        return cls(stage=stage, item=item, path=fault.path, kind=fault.kind, problem=fault.problem)

    def as_row(self) -> dict[str, str]:
        return asdict(self)
