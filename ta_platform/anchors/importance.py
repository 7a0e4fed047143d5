"""Counterfactual and resampling importance recomputed from a trace's rollouts, and compared with its labels.

Why: every probe in this project predicts labels taken from ``chunks_labeled.json``. If those
numbers were not what the rollouts say (a mislabelled file, a wrong sign convention, another
similarity rule, rollouts of another chunking), every downstream result would be about the wrong
target. The seed's ``verify_problem_labels`` recomputed them for one problem; this is that check.

The rule (docs ``../shared/docs/domain.md`` section 1, as the dataset's code computes it):
- accuracy[i]: share of the counted rollouts of chunk i (``chunk_<i>/solutions.json``: chunk i
  removed and resampled) with ``is_correct``; failed rollouts (``error``) are not counted.
- resampling importance[i] = accuracy[i+1] - accuracy[i]; 0 for the last chunk.
- counterfactual importance[i] = accuracy of the rollouts of chunk i whose resampled sentence is
  DISSIMILAR (cosine < 0.8 between ``chunk_resampled`` and ``chunk_removed`` under
  all-MiniLM-L6-v2) minus accuracy[i+1]; 0 when nothing is dissimilar and for the last chunk.
A chunk whose value needs a missing rollouts file is NaN (not recomputable), never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ta_platform.rollouts.solutions import ChunkRollouts

SIMILARITY_THRESHOLD = 0.8
LABEL_COLUMNS = {"accuracy": "accuracy", "counterfactual": "counterfactual_importance_accuracy",
                 "resampling": "resampling_importance_accuracy"}
IMPORTANCES = ("counterfactual", "resampling")
Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows


def _normalized(text: str) -> str:
    return " ".join(text.split())


def recompute_importances(chunk_texts: Sequence[str], rollouts: Mapping[int, ChunkRollouts], embed: Embed,
                          threshold: float = SIMILARITY_THRESHOLD) -> pd.DataFrame:
    """One row per chunk: counts, cosine-based dissimilar share, accuracy and both importances.

    ``chunk_texts``: the trace's chunks in order (their number fixes the last chunk);
    ``rollouts``: chunk index -> its counted rollouts (absent chunks have no file)."""
    n = len(chunk_texts)
    pairs = [(r.chunk_removed, r.chunk_resampled) for i in sorted(rollouts) for r in rollouts[i].rollouts]
    distinct = sorted({text for pair in pairs for text in pair})
    vectors = dict(zip(distinct, embed(distinct), strict=True)) if distinct else {}
    rows = []
    for i in range(n):
        chunk = rollouts.get(i)
        row = {"chunk_idx": i, "has_rollouts": chunk is not None, "n_rollouts": 0, "n_failed": 0,
               "n_dissimilar": 0, "n_removed_mismatch": 0, "min_similarity": np.nan,
               "accuracy": np.nan, "dissimilar_accuracy": np.nan}
        if chunk is not None:
            counted = chunk.rollouts
            similarity = np.array([float(vectors[r.chunk_removed] @ vectors[r.chunk_resampled]) for r in counted])
            dissimilar = similarity < threshold
            correct = np.array([r.is_correct for r in counted], dtype=bool)
            row.update(
                n_rollouts=len(counted), n_failed=chunk.n_failed, n_dissimilar=int(dissimilar.sum()),
                n_removed_mismatch=sum(_normalized(r.chunk_removed) != _normalized(chunk_texts[i]) for r in counted),
                min_similarity=float(similarity.min()) if len(counted) else np.nan,
                accuracy=float(correct.mean()) if len(counted) else np.nan,
                dissimilar_accuracy=float(correct[dissimilar].mean()) if dissimilar.any() else np.nan,
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    after = table["accuracy"].shift(-1)
    last = table["chunk_idx"] == n - 1
    table["resampling"] = np.where(last, 0.0, after - table["accuracy"])
    counterfactual = np.where(table["n_dissimilar"] > 0, table["dissimilar_accuracy"] - after, 0.0)
    counterfactual = np.where(table["has_rollouts"], counterfactual, np.nan)
    table["counterfactual"] = np.where(last, 0.0, counterfactual)
    return table


def compare_with_labels(recomputed: pd.DataFrame, chunks: Sequence[Mapping]) -> pd.DataFrame:
    """The per-chunk table: recomputed and labelled values side by side, with absolute differences."""
    table = recomputed.copy()
    for name, key in LABEL_COLUMNS.items():
        labelled = np.array([float(chunk[key]) for chunk in chunks])
        table = table.rename(columns={name: f"{name}_recomputed"})
        table[f"{name}_labelled"] = labelled
        table[f"{name}_abs_diff"] = (table[f"{name}_recomputed"] - labelled).abs()
    return table


@dataclass(frozen=True)
class Verdict:
    """The comparison of one trace: figures, the chunks at fault, and why it failed (empty: passed)."""

    mean_abs_diff: dict[str, float]
    max_abs_diff: dict[str, float]
    chunks_over_tolerance: dict[str, list[int]]
    not_recomputable: list[int]
    removed_mismatch_chunks: list[int]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(table: pd.DataFrame, tolerance: float, chunk_tolerance: float) -> Verdict:
    """Pass when, for both importances, the mean |difference| over the chunks is <= ``tolerance`` and
    no chunk's |difference| exceeds ``chunk_tolerance``; every chunk is recomputable; and every
    rollout's ``chunk_removed`` is the labelled chunk (else the rollouts belong to another chunking).

    Why a per-chunk bound beside the mean: one corrupted chunk in a 100-chunk trace moves the mean
    by a hundredth of its error, so a mean alone lets a single wrong label through."""
    mean, worst, over, failures = {}, {}, {}, []
    missing = [int(i) for i in table.loc[table[[f"{n}_recomputed" for n in IMPORTANCES]].isna().any(axis=1),
                                         "chunk_idx"]]
    usable = table[~table["chunk_idx"].isin(missing)]
    for name in IMPORTANCES:
        diffs = usable[f"{name}_abs_diff"]
        mean[name] = float(diffs.mean()) if len(diffs) else float("nan")
        worst[name] = float(diffs.max()) if len(diffs) else float("nan")
        over[name] = [int(i) for i in usable.loc[diffs > chunk_tolerance, "chunk_idx"]]
        if len(diffs) and mean[name] > tolerance:
            failures.append(f"mean |{name} importance difference| {mean[name]:.4f} > tolerance {tolerance}")
        if over[name]:
            failures.append(f"{name} importance differs by more than {chunk_tolerance} at chunk(s) "
                            f"{_listing(over[name])}")
    if missing:
        failures.append(f"chunk(s) {_listing(missing)} not recomputable: their rollouts file (or the next "
                        f"chunk's) is missing or holds no counted rollout")
    mismatched = [int(i) for i in table.loc[table["n_removed_mismatch"] > 0, "chunk_idx"]]
    if mismatched:
        failures.append(f"rollouts of chunk(s) {_listing(mismatched)} removed a different sentence than the "
                        f"labelled chunk (chunk_removed != chunk)")
    if len(usable) == 0:
        failures.append("no chunk could be recomputed")
    return Verdict(mean, worst, over, missing, mismatched, failures)


def _listing(indices: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" (+{len(indices) - limit} more)" if len(indices) > limit else "")
