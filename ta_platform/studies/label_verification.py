"""Label verification of one trace: pick it, fetch its rollouts, recompute, compare, decide.

Why a study module: the science (``anchors.importance``) knows nothing about sources; the Dagster
asset (``defs/thought_anchors/verification.py``) only records. This is the plain-Python path between
them, callable from a test or a notebook with any ``RolloutSource``.

Three outcomes, never a silent pass:
- ``verified``: every chunk recomputed, differences within the tolerances.
- ``failed``: differences beyond the tolerances, missing or unreadable rollout files for some
  chunks, or rollouts of another chunking; the reasons name the chunks.
- ``not_verifiable``: the source holds no rollouts at all for the trace (the real samples in
  ``../shared/realdata`` ship only the three files per trace). The reason says where they were
  looked for. The check reports it as a WARN failure, visible in the gate but not blocking, unless
  the user requires rollouts (``require_rollouts``): see docs/embedded_data.md, "Label verification".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ta_platform.anchors.importance import (
    SIMILARITY_THRESHOLD,
    Verdict,
    compare_with_labels,
    judge,
    recompute_importances,
)
from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.common.hashing import code_version
from ta_platform.extraction.sentence_encoder import MiniLMEncoder
from ta_platform.rollouts.layout import TraceRef
from ta_platform.rollouts.parsing import parse_trace
from ta_platform.rollouts.solutions import (
    SOLUTIONS_FILE,
    ChunkRollouts,
    default_verify_ref,
    local_solution_files,
    read_solutions,
    solutions_relpath,
)

logger = logging.getLogger(__name__)

VERIFIED, FAILED, NOT_VERIFIABLE = "verified", "failed", "not_verifiable"
FAULT_STAGE = "verify"


@dataclass(frozen=True)
class VerifyConfig:
    problem: str = ""  # "" = the default trace (``solutions.default_verify_ref``)
    model: str = ""
    split: str = ""
    tolerance: float = 0.01  # mean |difference| per importance
    chunk_tolerance: float = 0.1  # |difference| of any one chunk
    threshold: float = SIMILARITY_THRESHOLD

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class VerificationResult:
    status: str
    reason: str
    trace_key: str = ""
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdict: Verdict | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == VERIFIED


def choose_trace(source, config: VerifyConfig) -> TraceRef:
    """The trace to verify; a named problem/model/split that the source lacks is an error naming it."""
    refs = source.list_traces(models=[config.model] if config.model else None,
                              splits=[config.split] if config.split else None,
                              problem_ids=[config.problem] if config.problem else None)
    ref = default_verify_ref(refs)
    if ref is None:
        wanted = {k: v for k, v in (("problem", config.problem), ("model", config.model), ("split", config.split)) if v}
        raise ValueError(f"label verification: no trace matches {wanted or 'any'} in {source.describe()}")
    return ref


def rollout_files(source, ref: TraceRef, trace_folder: Path) -> dict[int, Path]:
    """chunk index -> local solutions.json: downloaded for this trace only by sources that download
    (``fetch_rollouts``), else read from the trace's folder."""
    fetch = getattr(source, "fetch_rollouts", None)
    return fetch(ref) if fetch is not None else local_solution_files(trace_folder)


def verify_trace(source, config: VerifyConfig, encoder: MiniLMEncoder | Callable[[], MiniLMEncoder]) -> VerificationResult:
    """Verify one trace of ``source``. ``encoder``: a loaded MiniLM, or a function that loads it
    (called only when there are rollouts to embed, so a not-verifiable run never loads the model)."""
    started = time.monotonic()
    ref = choose_trace(source, config)
    folder = source.fetch(ref)
    locate = getattr(source, "locate", None)
    where = locate(ref) if locate else str(folder)
    trace = parse_trace(ref, folder, source=where)
    provenance: dict[str, Any] = {"trace": ref.key, "source": source.describe(), "config": config.as_dict(),
                                  "chunks_labeled_sha256": trace.files.get("chunks_labeled.json", ""),
                                  "code_version": code_version()}
    files = rollout_files(source, ref, folder)
    if not files:
        reason = (f"rollouts absent: {where} has no chunk_<i>/{SOLUTIONS_FILE} for {ref.key} "
                  f"(source {source.describe()}); the labels cannot be recomputed from this copy")
        return VerificationResult(NOT_VERIFIABLE, reason, ref.key, provenance=provenance,
                                  seconds=time.monotonic() - started)
    rollouts: dict[int, ChunkRollouts] = {}
    faults = []
    for idx, path in files.items():
        if idx >= trace.n_chunks:
            faults.append(FaultRecord(FAULT_STAGE, ref.key, str(path), "extra_chunk",
                                      f"rollouts for chunk {idx}, but the trace has {trace.n_chunks} chunks"))
            continue
        try:
            rollouts[idx] = read_solutions(idx, path, shown_as=f"{where}/{solutions_relpath(idx)}")
        except DataFault as fault:
            logger.warning("unreadable rollouts: %s", fault)
            faults.append(FaultRecord.from_fault(FAULT_STAGE, ref.key, fault))
    encoder = encoder if isinstance(encoder, MiniLMEncoder) else encoder()
    table = compare_with_labels(recompute_importances(trace.chunk_texts, rollouts, encoder.encode, config.threshold),
                                trace.chunks)
    verdict = judge(table, config.tolerance, config.chunk_tolerance)
    provenance.update(encoder=encoder.provenance(), n_truncated_texts=encoder.n_truncated,
                      n_rollout_files=len(files))
    seconds = time.monotonic() - started
    logger.info("verified %s: %d chunks, %d rollouts in %.1fs; mean |diff| %s", ref.key, trace.n_chunks,
                int(table["n_rollouts"].sum()), seconds, verdict.mean_abs_diff)
    reasons = [*verdict.failures, *(f"{f.path}: {f.problem}" for f in faults)]
    status = VERIFIED if not reasons else FAILED
    reason = "; ".join(reasons) if reasons else (
        f"{trace.n_chunks} chunks recomputed from {int(table['n_rollouts'].sum())} rollouts; mean |diff| "
        + ", ".join(f"{k} {v:.2e}" for k, v in verdict.mean_abs_diff.items()))
    return VerificationResult(status, reason, ref.key, table, verdict, faults, provenance, seconds)
