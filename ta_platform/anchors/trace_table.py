"""The validated trace snapshot shared by every thought-anchor asset.

Why a snapshot: ``problem_index`` validates each trace once (from a Hub cache, a local folder or
the embedded default) and writes what downstream assets need to one Parquet file. Labels and spans
then read exactly the traces that were validated, whatever happens to the source afterwards, and
the snapshot's hash is the data version they depend on.
"""

from __future__ import annotations

import json

import pandas as pd

from ta_platform.common.hashing import stable_json_hash
from ta_platform.rollouts.think import think_region
from ta_platform.rollouts.trace import Trace

SNAPSHOT_COLUMNS = ["trace_key", "model", "split", "problem_id", "source", "full_cot", "think_start",
                    "think_end", "problem_json", "base_solution_json", "chunks_json", "files_json"]


def content_hash(trace: Trace) -> str:
    """Hash of the three source files' hashes: changes iff any input byte changes."""
    return stable_json_hash(sorted(trace.files.items()))


def problem_index_rows(traces: list[Trace]) -> pd.DataFrame:
    rows = []
    for trace in traces:
        start, end = think_region(trace.base_solution["full_cot"])
        rows.append({
            "trace_key": trace.key,
            "model": trace.model,
            "split": trace.split,
            "setting": trace.setting,
            "problem_id": trace.problem_id,
            "is_correct": bool(trace.base_solution["is_correct"]),
            "n_sentences": len(trace.chunks),
            "think_start": start,
            "think_end": end,
            "source": str(trace.source),
            "content_hash": content_hash(trace),
            **{f"sha256_{name.split('.')[0]}": digest for name, digest in sorted(trace.files.items())},
        })
    return pd.DataFrame(rows).sort_values("trace_key", ignore_index=True) if rows else pd.DataFrame()


def trace_snapshot(traces: list[Trace]) -> pd.DataFrame:
    rows = []
    for trace in sorted(traces, key=lambda t: t.key):
        full_cot = trace.base_solution["full_cot"]
        start, end = think_region(full_cot)
        rows.append({
            "trace_key": trace.key, "model": trace.model, "split": trace.split, "problem_id": trace.problem_id,
            "source": str(trace.source), "full_cot": full_cot, "think_start": start, "think_end": end,
            "problem_json": json.dumps(trace.problem, sort_keys=True),
            "base_solution_json": json.dumps(trace.base_solution, sort_keys=True),
            "chunks_json": json.dumps(trace.chunks),
            "files_json": json.dumps(trace.files, sort_keys=True),
        })
    return pd.DataFrame(rows, columns=SNAPSHOT_COLUMNS)


def traces_from_snapshot(snapshot: pd.DataFrame) -> list[Trace]:
    return [
        Trace(
            model=row.model, split=row.split, problem_id=row.problem_id,
            problem=json.loads(row.problem_json), base_solution=json.loads(row.base_solution_json),
            chunks=json.loads(row.chunks_json), files=json.loads(row.files_json), source=row.source,
        )
        for row in snapshot.itertuples()
    ]
