"""Character span table for every sentence of every trace (skip-and-record on faults)."""

from __future__ import annotations

import json

import pandas as pd

from ta_platform.anchors.alignment import align_chunks, chunks_file_of
from ta_platform.common.faults import DataFault, FaultRecord

SPAN_COLUMNS = ["trace_key", "chunk_idx", "char_start", "char_end", "match"]


def char_span_table(snapshot: pd.DataFrame) -> tuple[pd.DataFrame, list[FaultRecord]]:
    """Align every trace's chunks; a trace that does not align is skipped and recorded."""
    rows: list[dict] = []
    faults: list[FaultRecord] = []
    for trace in snapshot.itertuples():
        chunks = [chunk["chunk"] for chunk in json.loads(trace.chunks_json)]
        try:
            spans = align_chunks(trace.full_cot, chunks, (trace.think_start, trace.think_end),
                                 path=chunks_file_of(trace.source))
        except DataFault as fault:
            faults.append(FaultRecord.from_fault("align", trace.trace_key, fault))
            continue
        rows.extend({"trace_key": trace.trace_key, "chunk_idx": s.chunk_idx, "char_start": s.char_start,
                     "char_end": s.char_end, "match": s.match} for s in spans)
    return pd.DataFrame(rows, columns=SPAN_COLUMNS), faults
