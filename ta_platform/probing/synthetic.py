"""A synthetic labels frame + activations with a known answer, for tests and tripwire calibration.

Why: the tripwires must pass on sound data and fail on planted faults, and "sound" needs a ground
truth. Each sentence has a latent importance = content + position confound; anchors are the top
``anchor_rate`` of it per trace (like the real top-10% |CI| rule), so a position baseline gets part
of the way and activations, which encode the content term through a random projection, get further.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_platform.rollouts.layout import FUNCTION_TAGS

from .splits import problem_level_split, rows_split

_VOCABULARY = np.array(
    "so we need to find the value of x then compute sum check wait let me think again maybe "
    "answer is equal divide multiply square root total number each step because therefore".split()
)
_FUNCTION_TAGS = np.array(FUNCTION_TAGS)
_SPLIT_FOLDERS = {"correct": "correct_base_solution", "incorrect": "incorrect_base_solution"}


def make_synthetic_probe_data(
    seed: int,
    n_problems: int = 24,
    settings: tuple[str, ...] = ("correct", "incorrect"),
    sentences: tuple[int, int] = (20, 150),
    dims: int = 128,
    anchor_rate: float = 0.10,
    content_strength: float = 2.0,
    position_strength: float = 2.0,
    noise_sd: float = 1.0,
    model: str = "synthetic-model",
) -> tuple[pd.DataFrame, np.ndarray]:
    """(labels frame per ARCHITECTURE.md, float32 activations aligned row by row), from ``seed``.

    Activations = random projection of [content, 7 nuisance latents] + a per-problem offset (real
    activations cluster by problem) + isotropic noise. ``data_split`` is the seed-0 problem split.
    """
    rng = np.random.default_rng(seed)
    projection = rng.normal(0.0, 1.0, size=(8, dims)) / np.sqrt(8.0)
    frames, blocks = [], []
    for problem in range(n_problems):
        problem_id = str(100 + problem)
        offset = rng.normal(0.0, 0.5, size=dims)
        for setting in settings:
            n_chunks = int(rng.integers(sentences[0], sentences[1] + 1))
            frame, latents = _synthetic_trace(
                rng, model, setting, problem_id, n_chunks, anchor_rate, content_strength, position_strength
            )
            frames.append(frame)
            blocks.append(latents @ projection + offset + rng.normal(0.0, noise_sd, size=(n_chunks, dims)))
    frame = pd.concat(frames, ignore_index=True)
    frame["data_split"] = rows_split(frame["problem_id"], problem_level_split(frame["problem_id"], seed=0))
    return frame, np.vstack(blocks).astype(np.float32)


def _synthetic_trace(
    rng, model, setting, problem_id, n_chunks, anchor_rate, content_strength, position_strength
):
    chunk_idx = np.arange(n_chunks)
    rel_position = chunk_idx / (n_chunks - 1)
    content = rng.normal(size=n_chunks)
    importance = content_strength * content + position_strength * np.exp(-5.0 * rel_position)
    importance += rng.normal(0.0, 0.3, size=n_chunks)
    in_label_set = chunk_idx < n_chunks - 1  # the last chunk is dropped from the label set
    n_anchors = max(1, int(round(anchor_rate * in_label_set.sum())))
    ranked = np.argsort(-np.where(in_label_set, importance, -np.inf), kind="mergesort")
    anchor = np.zeros(n_chunks, dtype=int)
    anchor[ranked[:n_anchors]] = 1
    magnitude = 0.1 * np.exp(0.8 * (importance - importance.max()))
    magnitude[(rng.random(n_chunks) < 0.37) & (anchor == 0)] = 0.0  # many real CIs are exactly 0
    magnitude[~in_label_set] = 0.0
    counterfactual = magnitude * rng.choice([-1.0, 1.0], size=n_chunks)
    split_folder = _SPLIT_FOLDERS.get(setting, f"{setting}_base_solution")
    frame = pd.DataFrame(
        {
            "trace_key": f"{model}/{split_folder}/problem_{problem_id}",
            "model": model,
            "split": split_folder,
            "setting": setting,
            "problem_id": problem_id,
            "chunk_idx": chunk_idx,
            "n_chunks": n_chunks,
            "rel_position": rel_position,
            "function_tag": rng.choice(_FUNCTION_TAGS, size=n_chunks),
            "text": [
                " ".join(rng.choice(_VOCABULARY, size=int(rng.integers(4, 14)))) for _ in range(n_chunks)
            ],
            "counterfactual_importance": counterfactual,
            "resampling_importance": rng.normal(0.0, 0.02, size=n_chunks),
            "is_last_chunk": ~in_label_set,
            "in_label_set": in_label_set,
            "anchor": anchor,
        }
    )
    latents = np.column_stack([content, rng.normal(size=(n_chunks, 7))])
    return frame, latents
