"""Planted labels of a synthetic trace: counterfactual importance and the other chunk fields.

Why planted, and how (all constants below are documented in docs/embedded_data.md):
- CONTENT: chunks written from a cue template (see ``synthetic_sentences.CUE_TEMPLATES``) get a
  large extra |CI| drawn per family; a probe that reads the words can find them.
- POSITION CONFOUND: every magnitude is multiplied by an envelope that is high at the start of a
  trace and low in its last quarter, as in the real data.
- NOISE: an exponential magnitude for every chunk; random signs.
- ZEROS and TIES: many chunks get exactly 0 (nothing dissimilar was resampled), and every value is a
  multiple of 0.01 (rollout fractions), so equal values are common; the last chunk is always 0.
- ``resampling_importance_accuracy[i] == accuracy[i+1] - accuracy[i]`` (0 for the last chunk).
"""

from __future__ import annotations

import math
import random
import re

from ta_platform.rollouts.synthetic_sentences import DraftChunk

CUE_STRENGTH: dict[str, tuple[float, float]] = {  # uniform range of the added |CI|, per family
    "pivot": (0.16, 0.40),
    "backtrack": (0.14, 0.36),
    "verify": (0.10, 0.28),
    "key_result": (0.12, 0.32),
}
NOISE_MEAN = 0.035  # exponential |CI| noise for every chunk
EARLY_GAIN = 4.0  # envelope(pos) = 1 + EARLY_GAIN * exp(-pos / EARLY_SCALE), times LATE_FACTOR after LATE_START
EARLY_SCALE = 0.1
LATE_START = 0.75
LATE_FACTOR = 0.45
ZERO_PROBABILITY = {"cue": 0.06, "plain": 0.25}
NEGATIVE_PROBABILITY = {"cue": 0.65, "plain": 0.5}  # negative CI = the sentence helps
QUANTUM = 0.01
ACCURACY_STEP_SD = 0.07


def envelope(position: float) -> float:
    """Multiplier of |CI| at relative position 0..1: the planted position confound."""
    gain = 1.0 + EARLY_GAIN * math.exp(-position / EARLY_SCALE)
    return gain * (LATE_FACTOR if position > LATE_START else 1.0)


def quantize(value: float) -> float:
    return round(round(value / QUANTUM) * QUANTUM, 10)


def counterfactual_importances(rng: random.Random, chunks: list[DraftChunk]) -> list[float]:
    """Signed CI per chunk (accuracy version): (cue boost + noise) x envelope, zeros, quantized."""
    n = len(chunks)
    values = []
    for i, chunk in enumerate(chunks):
        kind = "cue" if chunk.cue else "plain"
        if i == n - 1 or rng.random() < ZERO_PROBABILITY[kind]:
            values.append(0.0)
            continue
        magnitude = rng.expovariate(1.0 / NOISE_MEAN)
        if chunk.cue:
            magnitude += rng.uniform(*CUE_STRENGTH[chunk.cue])
        magnitude = min(1.0, magnitude * envelope(i / (n - 1)))
        sign = -1.0 if rng.random() < NEGATIVE_PROBABILITY[kind] else 1.0
        values.append(quantize(sign * magnitude) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return values


def accuracy_series(rng: random.Random, n: int, correct: bool) -> list[float]:
    """Accuracy of rollouts resampled from each chunk: a bounded random walk ending at 1 (or 0)."""
    start, end = rng.uniform(0.35, 0.8), (1.0 if correct else 0.0)
    values, current = [], start
    for i in range(n - 1):
        drift = (end - current) / max(1, n - 1 - i)
        current = min(1.0, max(0.0, current + drift + rng.gauss(0.0, ACCURACY_STEP_SD)))
        values.append(round(current, 2))
    values.append(end)
    return values


def summary_of(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text.lower())
    return " ".join(words[:4])


def chunk_records(rng: random.Random, chunks: list[DraftChunk], correct: bool) -> list[dict]:
    """The chunks_labeled.json list: every key of the real files, in the real order."""
    n = len(chunks)
    ci = counterfactual_importances(rng, chunks)
    accuracy = accuracy_series(rng, n, correct)
    records = []
    for i, chunk in enumerate(chunks):
        last = i == n - 1
        rollouts = rng.randint(90, 100)
        resampling = 0.0 if last else accuracy[i + 1] - accuracy[i]
        depends_on = sorted(rng.sample(range(max(0, i - 6), i), min(i, rng.choice([0, 1, 1, 2])))) if i else []
        records.append(
            {
                "chunk": chunk.text,
                "chunk_idx": i,
                "function_tags": [chunk.tag],
                "depends_on": [str(d) for d in depends_on],
                "accuracy": accuracy[i],
                "resampling_importance_accuracy": resampling,
                "resampling_importance_kl": 0.0 if last else abs(resampling) * 3 + rng.random() * 0.5,
                "counterfactual_importance_accuracy": ci[i],
                "counterfactual_importance_kl": 0.0 if ci[i] == 0 else abs(ci[i]) * rng.uniform(2, 6) + rng.random() * 0.02,
                "forced_importance_accuracy": 0.0 if last or rng.random() < 0.6 else quantize(rng.uniform(-0.1, 0.1)) + 0.0,
                "forced_importance_kl": 0.0 if last else rng.uniform(0.1, 4.0),
                "different_trajectories_fraction": 0.0 if last else rng.randint(0, rollouts) / rollouts,
                "overdeterminedness": 0.0 if last else rng.randint(0, rollouts) / rollouts,
                "summary": summary_of(chunk.text),
            }
        )
    return records
