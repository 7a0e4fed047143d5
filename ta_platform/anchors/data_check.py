"""Validate a dataset folder trace by trace: load, align, label. Used by ``ta-platform check-data``.

Why per trace: a researcher pointing the platform at a new folder wants every broken file named in
one pass, not the first traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ta_platform.anchors.alignment import align_chunks, chunks_file_of
from ta_platform.anchors.labels import AnchorLabelConfig, trace_label_rows
from ta_platform.common.faults import DataFault
from ta_platform.rollouts.think import think_region


@dataclass
class TraceReport:
    trace_key: str
    n_sentences: int = 0
    n_aligned: int = 0
    n_anchors: int = 0
    faults: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.faults


def check_source(source, config: AnchorLabelConfig | None = None) -> list[TraceReport]:
    """One report per trace found under the source (including those that fail to load)."""
    from ta_platform.rollouts.sources import load_traces

    config = config or AnchorLabelConfig()
    traces, load_faults = load_traces(source, models=None, splits=None, problem_ids="all")
    reports = [TraceReport(f.item, faults=[f"{f.path}: {f.problem}"]) for f in load_faults]
    for trace in traces:
        report = TraceReport(trace.key, n_sentences=len(trace.chunks))
        full_cot = trace.base_solution["full_cot"]
        try:
            spans = align_chunks(full_cot, [c["chunk"] for c in trace.chunks], think_region(full_cot),
                                 path=chunks_file_of(trace.source))
            report.n_aligned = len(spans)
        except DataFault as fault:
            report.faults.append(str(fault))
        report.n_anchors = int(trace_label_rows(trace, config, data_split="train")["anchor"].sum())
        reports.append(report)
    return sorted(reports, key=lambda r: r.trace_key)
