"""The embedded default dataset: synthetic traces in the exact math-rollouts Hub layout and schema.

Why: a fresh checkout must run the whole pipeline with no network and no private data, and tests
need a dataset whose ground truth is KNOWN. The traces carry a planted content signal, a position
confound, noise, ties and zeros (see ``synthetic_labels`` and docs/embedded_data.md); the manifest
at the dataset root records what was planted so later tests can check that probes find it.
Output is byte-identical for the same seed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ta_platform.common.atomic import atomic_write_text
from ta_platform.common.hashing import sha256_bytes
from ta_platform.rollouts import synthetic_labels as labels
from ta_platform.rollouts import synthetic_rollouts
from ta_platform.rollouts import synthetic_sentences as sentences
from ta_platform.rollouts.layout import (
    BASE_SOLUTION_FILE,
    CHUNKS_FILE,
    CORRECT_SPLIT,
    KNOWN_MODELS,
    PROBLEM_FILE,
    SPLITS,
    TEMPERATURE_DIR,
    TraceRef,
)
from ta_platform.rollouts.sentence_split import split_sentences
from ta_platform.rollouts.solutions import default_verify_ref, solutions_relpath
from ta_platform.rollouts.synthetic_problems import SyntheticProblem, make_problems

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: distinct problem statements (no duplicate problem under two ids)
MANIFEST_FILE = "manifest.json"
MIN_CHUNKS, MODE_CHUNKS, MAX_CHUNKS = 20, 50, 150
ANCHOR_QUANTILE = 0.9
PROMPT_TEMPLATE = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. "
    "Problem: {problem} Solution: \n<think>\n"
)


def dump_like_hub(payload: Any) -> str:
    """The real files' formatting: 2-space indent, ASCII escapes, no trailing newline."""
    return json.dumps(payload, indent=2)


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def planted_anchors(records: list[dict]) -> list[int]:
    """Top-10% |CI| of a trace without its last chunk (ties at the threshold included, 0 never)."""
    magnitudes = [abs(r["counterfactual_importance_accuracy"]) for r in records[:-1]]
    threshold = quantile(magnitudes, ANCHOR_QUANTILE)
    return [i for i, m in enumerate(magnitudes) if m >= threshold and m > 0]


def answer_section(problem: SyntheticProblem, answer: str) -> str:
    return (
        f"To find {problem.goal}, we {problem.plans[0]} and then {problem.plans[-1]}.\n\n"
        f"\\[ {problem.display} \\]\n\nThus, the answer is \\(\\boxed{{{answer}}}\\)."
    )


def build_trace(seed: int, problem: SyntheticProblem, model: str, split: str) -> tuple[dict, dict, list[dict], dict]:
    """(problem.json, base_solution.json, chunks_labeled.json, ground truth) of one trace."""
    rng = random.Random(f"ta-embedded:{seed}:{model}:{split}:{problem.problem_id}")
    correct = split == CORRECT_SPLIT
    answer = problem.answer if correct else problem.wrong_answer
    n_chunks = int(rng.triangular(MIN_CHUNKS, MAX_CHUNKS + 1, MODE_CHUNKS))
    drafts = sentences.compose_chunks(rng, problem, n_chunks, answer)
    think = sentences.render_think(rng, drafts)
    if split_sentences(think) != [draft.text for draft in drafts]:  # a generator bug, never a data problem
        raise RuntimeError(f"generated think text does not round-trip through split_sentences ({problem.problem_id})")
    prompt = PROMPT_TEMPLATE.format(problem=problem.problem)
    solution = f"{think}\n</think>\n\n{answer_section(problem, answer)}"
    base_solution = {
        "prompt": prompt,
        "solution": solution,
        "full_cot": prompt + solution,
        "answer": answer,
        "is_correct": correct,
    }
    records = labels.chunk_records(rng, drafts, correct)
    truth = {
        "n_chunks": len(records),
        "cue_chunks": [i for i, d in enumerate(drafts) if d.cue],
        "cue_family_by_chunk": {str(i): d.cue for i, d in enumerate(drafts) if d.cue},
        "merged_lead_chunks": [i for i, d in enumerate(drafts) if d.lead],
        "anchors": planted_anchors(records),
    }
    return problem.problem_json(), base_solution, records, truth


def planted_description() -> dict[str, Any]:
    """The planted rules and constants, copied into the manifest for tests and readers."""
    return {
        "cue_families": {
            family: {"function_tag": tag, "cue_words": list(sentences.CUE_WORDS[family]),
                     "ci_boost_range": list(labels.CUE_STRENGTH[family])}
            for family, (tag, _) in sentences.CUE_TEMPLATES.items()
        },
        "cue_probability_given_tag": sentences.CUE_PROBABILITY,
        "noise_mean_abs_ci": labels.NOISE_MEAN,
        "envelope": {"early_gain": labels.EARLY_GAIN, "early_scale": labels.EARLY_SCALE,
                     "late_start": labels.LATE_START, "late_factor": labels.LATE_FACTOR},
        "zero_probability": labels.ZERO_PROBABILITY,
        "negative_probability": labels.NEGATIVE_PROBABILITY,
        "ci_quantum": labels.QUANTUM,
        "lead_pieces": list(sentences.LEAD_PIECES),
        "anchor_rule": "per trace, last chunk dropped: |CI| >= linear 0.9-quantile of |CI| and |CI| > 0",
    }


def write_rollouts(folder: Path, seed: int, ref: TraceRef, records: list[dict], prompt: str,
                   problem: SyntheticProblem) -> dict[str, Any]:
    """``chunk_<i>/solutions.json`` of every chunk of one trace (records already reproducible)."""
    per_chunk = synthetic_rollouts.trace_rollouts(seed, ref.key, records, prompt, problem)
    digest = []
    for i, rollouts in enumerate(per_chunk):
        text = dump_like_hub(rollouts)
        atomic_write_text(folder / solutions_relpath(i), text)
        digest.append(sha256_bytes(text.encode("utf-8")))
    return {"n_rollout_files": len(per_chunk),
            "n_rollouts": sum(1 for rollouts in per_chunk for r in rollouts if "error" not in r),
            "n_failed_rollouts": sum(1 for rollouts in per_chunk for r in rollouts if "error" in r),
            "solutions_sha256": sha256_bytes("\n".join(digest).encode("utf-8"))}


def generate_dataset(out_dir: str | os.PathLike[str], seed: int = 0, n_problems: int = 24,
                     rollouts: bool = False) -> dict[str, Any]:
    """Write the embedded dataset (both models x both splits x ``n_problems``) and its manifest.

    ``rollouts``: also write ``chunk_<i>/solutions.json`` for the trace the label verification reads
    by default (``solutions.default_verify_ref``); that trace's labels are first made reproducible
    from rollouts (``synthetic_rollouts``), every other file is the same as without rollouts.
    """
    if n_problems < 1:
        raise ValueError("n_problems must be at least 1")
    out_dir = Path(out_dir)
    problems = make_problems(seed, n_problems)
    rollout_ref = None
    if rollouts:
        rollout_ref = default_verify_ref(TraceRef(m, s, p.problem_id) for m in KNOWN_MODELS for s in SPLITS
                                         for p in problems)
    traces: dict[str, Any] = {}
    rollout_info: dict[str, Any] = {}
    total_chunks = 0
    for model in KNOWN_MODELS:
        for split in SPLITS:
            for problem in problems:
                ref = TraceRef(model, split, problem.problem_id)
                problem_json, base_solution, records, truth = build_trace(seed, problem, model, split)
                folder = out_dir / ref.relative_dir
                if ref == rollout_ref:
                    records, changed = synthetic_rollouts.make_reproducible(records)
                    truth["anchors"] = planted_anchors(records)
                    rollout_info[ref.key] = {
                        "changed_chunks": changed,
                        **write_rollouts(folder, seed, ref, records, base_solution["prompt"], problem),
                    }
                files = {}
                for name, payload in ((PROBLEM_FILE, problem_json), (BASE_SOLUTION_FILE, base_solution),
                                      (CHUNKS_FILE, records)):
                    text = dump_like_hub(payload)
                    atomic_write_text(folder / name, text)
                    files[name] = sha256_bytes(text.encode("utf-8"))
                traces[ref.key] = {**truth, "files": files}
                total_chunks += len(records)
    manifest = {
        "dataset": "ta-platform embedded math-rollouts",
        "generator": "ta_platform.rollouts.generator",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_problems": n_problems,
        "temperature_dir": TEMPERATURE_DIR,
        "models": list(KNOWN_MODELS),
        "splits": list(SPLITS),
        "problem_ids": [p.problem_id for p in problems],
        "n_traces": len(traces),
        "n_chunks": total_chunks,
        "planted": planted_description(),
        "traces": traces,
    }
    if rollouts:  # absent otherwise, so a dataset without rollouts is byte-identical to earlier versions
        manifest["rollouts"] = rollout_info
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(dataset_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads((Path(dataset_dir) / MANIFEST_FILE).read_text())


def ensure_dataset(out_dir: str | os.PathLike[str], seed: int = 0, n_problems: int = 24,
                   rollouts: bool = True) -> Path:
    """Generate the dataset at ``out_dir`` unless a manifest is already there; return ``out_dir``.

    The embedded default carries the rollouts of the verified trace (``rollouts``), so the label
    verification runs offline; a folder generated without them (or by an older version) is regenerated.

    Written to a temporary sibling and renamed into place, so concurrent first uses (several Dagster
    step processes) never see a half-written dataset: the first rename wins, the others discard theirs.
    """
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST_FILE).is_file():
        manifest = read_manifest(out_dir)
        found = (manifest.get("generator_version"), manifest.get("seed"), manifest.get("n_problems"),
                 "rollouts" in manifest)
        if found == (GENERATOR_VERSION, seed, n_problems, rollouts):
            return out_dir
        # A stale cache is never silently reused: move it aside and regenerate.
        logger.warning("%s holds (version, seed, problems, rollouts) = %s, wanted %s; regenerating", out_dir, found,
                       (GENERATOR_VERSION, seed, n_problems, rollouts))
        stale = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.stale.", dir=out_dir.parent))
        os.rename(out_dir, stale / out_dir.name)
        shutil.rmtree(stale, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        generate_dataset(staging, seed=seed, n_problems=n_problems, rollouts=rollouts)
        try:
            os.rename(staging, out_dir)
        except OSError:
            if not (out_dir / MANIFEST_FILE).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir
