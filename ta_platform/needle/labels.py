"""Token labels from character offsets, on the exact string fed to the model, and the negatives sample.

Why from the model's own tokenization: a label must name the token whose activation the probe
reads, so positives come from ``tokenize_with_offsets`` (the same call, string and special-token
setting the extraction core uses) and the shared span mapping ``char_spans_to_token_spans`` (a token
overlapping the needle by one character is a positive). Special tokens (BOS) have no characters and
are never labelled.

Negatives: ``negatives_per_doc`` tokens outside the needle, sampled per TRAINING document and seed
from a hash of (seed, doc id) -- not from iteration order -- so any seed's sample can be recomputed
from the document alone; or ``all``. Validation and test documents keep every token: the F1
threshold chosen on validation is applied to test, so validation must be drawn like test (a
threshold chosen among 16 negatives per document would fire far too often among every token).
Which tokens get activations stored (``stored``): every needle token and the negatives of every
configured seed in train documents, and every token of the validation and test documents (the
document monitor scores all of a document's tokens).

``content_id`` (``probing.splits.unit_identity`` of the document text) names a document by what it
says, not by its id: a copy under a new id has the same content id, which the split-leak check and
the permutation null's random labels key on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ta_platform.common.faults import DataFault, FaultRecord
from ta_platform.extraction.spans import char_spans_to_token_spans, tokenize_with_offsets
from ta_platform.needle.dataset import NeedleDocument
from ta_platform.probing.splits import unit_identity

ALL = "all"
LABEL_COLUMNS = ["doc_id", "group", "content_id", "split", "has_needle", "position", "token_id", "char_start",
                 "char_end", "is_needle", "n_tokens", "rel_position", "stored"]
EVERY_TOKEN_SPLITS = ("val", "test")  # splits whose documents keep every token (drawn like the reported rows)


@dataclass(frozen=True)
class TokenLabelConfig:
    negatives_per_doc: int | str = 16  # an int, or "all"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # probe seeds whose negatives are stored
    add_special_tokens: bool = True  # as the extraction core feeds the model

    def __post_init__(self) -> None:
        k = self.negatives_per_doc
        if not (k == ALL or (isinstance(k, int) and not isinstance(k, bool) and k > 0)):
            raise ValueError(f"negatives_per_doc must be a positive integer or 'all', not {k!r}")

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def sample_negatives(doc_id: str, candidates: np.ndarray, k: int | str, seed: int) -> np.ndarray:
    """Sorted positions of ``k`` of ``candidates`` (all of them for ``"all"`` or when fewer); the draw
    depends on the seed, the document and the set of candidates, not on their order."""
    candidates = np.unique(np.asarray(candidates, dtype=np.int64))
    if k == ALL or candidates.size <= int(k):
        return np.sort(candidates)
    digest = hashlib.sha256(f"{int(seed)}:{doc_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return np.sort(rng.choice(candidates, size=int(k), replace=False))


def document_token_labels(doc: NeedleDocument, tokenizer: Any, config: TokenLabelConfig) -> pd.DataFrame:
    """One row per real token of ``doc`` (see ``LABEL_COLUMNS``); ``DataFault`` when a needle covers no token."""
    ids, offsets = tokenize_with_offsets(tokenizer, doc.text, add_special_tokens=config.add_special_tokens,
                                         item=doc.doc_id)
    is_needle = np.zeros(len(ids), dtype=bool)
    if doc.needle_spans:
        spans = char_spans_to_token_spans(offsets, doc.needle_spans, item=doc.doc_id, text_length=len(doc.text))
        for start, end in spans:
            is_needle[start:end] = True
    real = offsets[:, 1] > offsets[:, 0]
    positions = np.flatnonzero(real)
    negatives = positions[~is_needle[positions]]
    if doc.split in EVERY_TOKEN_SPLITS:
        stored = real.copy()
    else:
        stored = is_needle.copy()
        for seed in config.seeds:
            stored[sample_negatives(doc.doc_id, negatives, config.negatives_per_doc, seed)] = True
    n = len(ids)
    return pd.DataFrame({
        "doc_id": doc.doc_id, "group": doc.group, "content_id": unit_identity(doc.text), "split": doc.split,
        "has_needle": doc.has_needle,
        "position": positions, "token_id": ids[positions], "char_start": offsets[positions, 0],
        "char_end": offsets[positions, 1], "is_needle": is_needle[positions], "n_tokens": n,
        "rel_position": positions / max(n - 1, 1), "stored": stored[positions],
    }, columns=LABEL_COLUMNS)


def token_labels(docs: Sequence[NeedleDocument], tokenizer: Any, config: TokenLabelConfig,
                 stage: str = "needle_labels") -> tuple[pd.DataFrame, list[FaultRecord]]:
    """Labels of every document; a document whose needle covers no token is skipped with a fault."""
    frames, faults = [], []
    for doc in docs:
        try:
            frames.append(document_token_labels(doc, tokenizer, config))
        except DataFault as fault:
            faults.append(FaultRecord.from_fault(stage, doc.doc_id, fault))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LABEL_COLUMNS)
    return frame, faults


def seed_rows(labels: pd.DataFrame, seed: int, config: TokenLabelConfig) -> np.ndarray:
    """Mask of the label rows a probe of ``seed`` trains/validates on: needle tokens and the seed's negatives
    in train documents, every token in validation and test documents."""
    keep = labels["is_needle"].to_numpy(dtype=bool) | np.isin(labels["split"].to_numpy(), EVERY_TOKEN_SPLITS)
    positions = labels["position"].to_numpy(dtype=np.int64)
    negative = ~labels["is_needle"].to_numpy(dtype=bool)
    for doc_id, rows in labels.groupby("doc_id", sort=False).indices.items():
        rows = np.asarray(rows)
        if labels["split"].iat[rows[0]] in EVERY_TOKEN_SPLITS:
            continue
        candidate_rows = rows[negative[rows]]
        chosen = sample_negatives(doc_id, positions[candidate_rows], config.negatives_per_doc, seed)
        keep[candidate_rows[np.isin(positions[candidate_rows], chosen)]] = True
    return keep
