"""Rollouts (``chunk_<i>/solutions.json``) for a generated trace that REPRODUCE its labels exactly.

Why: the label verification recomputes counterfactual and resampling importance from rollouts
(docs/embedded_data.md, "Rollouts"). For the check to run offline on the embedded default and mean
something, the generator writes rollouts whose recomputation gives the trace's own values to float
precision, so any difference is a fault, never noise.

How, per chunk i (accuracy a_i and CI c_i are multiples of 0.01 in the generated labels):
- N_i counted rollouts with K_i = a_i * N_i correct (``is_correct``), so accuracy[i] = a_i exactly.
- D_i of them are DISSIMILAR: their ``chunk_resampled`` is a sentence from ``DISSIMILAR_POOL``
  (cosine with every generated chunk < 0.8 under all-MiniLM-L6-v2; measured maximum in the docs);
  the others are SIMILAR: ``chunk_resampled`` == ``chunk_removed`` (cosine 1). Of the dissimilar
  ones, Kd_i are correct with Kd_i / D_i = a_{i+1} + c_i, so CI[i] = Kd_i/D_i - a_{i+1} = c_i.
  c_i = 0 (and the last chunk) get D_i = 0: "nothing dissimilar", as in the dataset.
- N_i is the first count >= MIN_ROLLOUTS (100, 101, ...) that makes both fractions exact and
  feasible, with D_i / N_i near a drawn dissimilar share; some chunks also get one or two FAILED
  rollouts (``error`` instead of an answer), which count for nothing, as in the dataset.
- A planted c_i that NO rollouts can give (a_{i+1} + c_i outside [0, 1], or beside a_i = 1 every
  dissimilar rollout must be correct) is replaced by the nearest achievable value before the labels
  are written (``make_reproducible``): 12% of the generated chunks would need it (782 of 6,444), in
  95 of the 96 traces of the default dataset. Only traces that get rollouts are changed, and their changed chunks
  are listed in the manifest; every other trace keeps its planted values byte for byte.
The rollouts draw from their own random stream (``ta-embedded-rollouts:...``): no other file's bytes
depend on whether they are written.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from fractions import Fraction

from ta_platform.rollouts.synthetic_labels import QUANTUM, quantize
from ta_platform.rollouts.synthetic_problems import SyntheticProblem

MIN_ROLLOUTS = 100
MAX_ROLLOUTS = 400
DISSIMILAR_SHARE = (0.2, 0.6)  # uniform range of the share of dissimilar resamples of a chunk
FAILED_PROBABILITY = 0.15  # a chunk gets one or two failed rollouts
# Off-template resamples. Their largest cosine with any of the 3,017 distinct chunk texts of the default
# dataset is 0.52 (docs/embedded_data.md); a candidate at 0.74 was dropped as too near the 0.8 threshold.
DISSIMILAR_POOL: tuple[str, ...] = (
    "A quick sketch on scrap paper might reveal some hidden symmetry here.",
    "Honestly, guessing randomly would never lead anywhere useful.",
    "Maybe recalling a similar puzzle from an old textbook could give inspiration.",
    "Perhaps looking at parity or remainders modulo four reveals a pattern.",
    "An induction argument over small cases might work as well.",
)
FAILED_ERROR = "Generation failed: no final answer extracted"


def _hundredths(value: float) -> int:
    """A generated value (a multiple of 0.01) as an integer number of hundredths, exactly."""
    scaled = round(value / QUANTUM)
    if abs(scaled * QUANTUM - value) > 1e-9:
        raise ValueError(f"{value!r} is not a multiple of {QUANTUM}: the generator's labels changed")
    return int(scaled)


def rollout_counts(accuracy: Fraction, target: Fraction | None, share: float) -> tuple[int, int, int, int] | None:
    """(N, K, D, Kd): N rollouts, K correct; D dissimilar, Kd of them correct, with K/N == ``accuracy``
    and Kd/D == ``target`` exactly; None when no N <= MAX_ROLLOUTS allows it.

    ``target`` None means nothing dissimilar (D = 0). D = j*q for the reduced target p/q; j = 1 is the
    easiest to fit (p <= K, q - p <= N - K, q < N), larger j bring D/N nearer ``share``."""
    for n in range(MIN_ROLLOUTS, MAX_ROLLOUTS + 1):
        k = accuracy * n
        if k.denominator != 1:
            continue
        k = int(k)
        if target is None:
            return n, k, 0, 0
        p, q = target.numerator, target.denominator
        limits = [(n - 1) // q, k // p if p else n, (n - k) // (q - p) if q > p else n]
        j_max = min(limits)
        if j_max < 1:
            continue
        j = min(j_max, max(1, round(share * n / q)))
        return n, k, j * q, j * p
    return None


@functools.lru_cache(maxsize=4096)
def _achievable(accuracy: Fraction, target: Fraction) -> bool:
    return rollout_counts(accuracy, target, 0.5) is not None


def make_reproducible(records: list[dict]) -> tuple[list[dict], list[int]]:
    """Records whose every CI some rollouts can give, and the chunk indices changed.

    CI[i] = Kd/D - accuracy[i+1] needs a dissimilar accuracy Kd/D in [0, 1] that fits beside
    accuracy[i] (e.g. accuracy[i] == 1 forces every dissimilar rollout to be correct). A planted CI
    that no counts allow is replaced by the achievable one nearest to it (0, nothing dissimilar, is
    always achievable); a CI set to 0 gets a KL of 0, as every zero CI of the generator has."""
    out = [dict(record) for record in records]
    changed = []
    for i in range(len(out) - 1):
        ci = out[i]["counterfactual_importance_accuracy"]
        if ci == 0:
            continue
        accuracy = Fraction(_hundredths(out[i]["accuracy"]), 100)
        after = _hundredths(out[i + 1]["accuracy"])
        target = after + _hundredths(ci)
        if 0 <= target <= 100 and _achievable(accuracy, Fraction(target, 100)):
            continue
        achievable = [0] + [m - after for m in range(101)
                            if m != after and _achievable(accuracy, Fraction(m, 100))]
        best = min(achievable, key=lambda c: (abs(c - _hundredths(ci)), abs(c)))
        out[i]["counterfactual_importance_accuracy"] = quantize(best * QUANTUM) + 0.0
        if best == 0:
            out[i]["counterfactual_importance_kl"] = 0.0
        changed.append(i)
    return out, changed


def chunk_rollouts(rng: random.Random, i: int, texts: Sequence[str], records: list[dict], prompt: str,
                   problem: SyntheticProblem) -> list[dict]:
    """The solutions.json records of chunk i (shuffled; counts from ``rollout_counts``)."""
    n_chunks = len(records)
    accuracy = Fraction(_hundredths(records[i]["accuracy"]), 100)
    ci = records[i]["counterfactual_importance_accuracy"]
    target = None
    if i < n_chunks - 1 and ci != 0:
        target = Fraction(_hundredths(records[i + 1]["accuracy"]) + _hundredths(ci), 100)
    counts = rollout_counts(accuracy, target, rng.uniform(*DISSIMILAR_SHARE))
    if counts is None:
        raise ValueError(f"chunk {i}: its labels cannot come from rollouts; pass them through make_reproducible")
    n, k, d, kd = counts
    # (dissimilar?, correct?) for every counted rollout
    outcomes = [(True, True)] * kd + [(True, False)] * (d - kd) + [(False, True)] * (k - kd) \
        + [(False, False)] * (n - d - (k - kd))
    rng.shuffle(outcomes)
    removed = texts[i]
    prefix = " ".join(texts[:i])
    records_out = []
    for dissimilar, correct in outcomes:
        resampled = rng.choice(DISSIMILAR_POOL) if dissimilar else removed
        answer = problem.answer if correct else problem.wrong_answer
        rollout = f"{resampled} So the answer is {answer}.\n</think>\n\nThe answer is \\(\\boxed{{{answer}}}\\)."
        records_out.append({
            "chunk_removed": removed,
            "prefix_without_chunk": prefix,
            "chunk_resampled": resampled,
            "rollout": rollout,
            "full_cot": f"{prompt}{prefix} {rollout}" if prefix else f"{prompt}{rollout}",
            "answer": answer,
            "is_correct": correct,
        })
    if rng.random() < FAILED_PROBABILITY:
        for _ in range(rng.randint(1, 2)):
            records_out.insert(rng.randint(0, len(records_out)), {
                "chunk_removed": removed, "prefix_without_chunk": prefix, "error": FAILED_ERROR,
            })
    return records_out


def trace_rollouts(seed: int, key: str, records: list[dict], prompt: str,
                   problem: SyntheticProblem) -> list[list[dict]]:
    """solutions.json records for every chunk of one trace whose labels passed ``make_reproducible``."""
    rng = random.Random(f"ta-embedded-rollouts:{seed}:{key}")
    texts = [record["chunk"] for record in records]
    return [chunk_rollouts(rng, i, texts, records, prompt, problem) for i in range(len(records))]
