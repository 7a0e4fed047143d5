"""Each study's own probe stage on synthetic activations at the seeds' shapes and counts.

Why: every study has only run at toy scale (576 dims, a few hundred units); what decides whether
the platform can run a seed's own experiment on one machine is the time and peak memory of the
probe stage at that size, and whether the probe still recovers a signal we know is there. For
each study this generates low-rank activations with a planted linear score
(``synthetic_activations``) at the seed's dims, layers and unit counts (``--fraction`` scales the
units, never the dims), writes them through the activation store in the paper registry's storage
dtype (bfloat16), and runs the functions the study's asset runs on them:

- ``anchors``: ``studies.activation_slices.iter_probe_slices`` + ``studies.anchor_probes.run_seeds``
  (problem-level split per seed, position and text baselines, the linear probe with its C grid chosen
  on validation; every seed's linear probes heads of one engine fit per slice), as the ``probes``
  asset runs a seed range, with the asset's ``ProbeSettings`` defaults;
- ``backtracking``: ``studies.backtracking.load_slice`` + ``run_seed`` (the seed's split by chain problem,
  every lag and C a head of one engine fit per layer, token-identity and position baselines, C chosen
  on validation) and the chain-problem bootstrap of the margins (``chains.intervals.margin_summary``,
  what ``backtracking_margin_summary`` runs), with ``BacktrackingSettings``' chains-file config;
- ``preferences``: ``preferences.utility_probes.utility_probe_report`` (10-alpha sweep on half the
  eval tasks, raw and topic-demeaned mu, hold-one-topic-out folds, bootstrap intervals) over every
  layer's prompt-last rows read from the store the way the asset reads them.

"planted" is the AUROC (or Pearson r) of the true planted score on exactly the rows the probe's
reported AUROC (or r) is computed on. Generation and the probe stage each run in a fresh
interpreter, so each stage's peak RSS (``ru_maxrss`` of that process) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STORAGE_DTYPE = "bfloat16"  # what the paper models' registry entries store (extraction/models.toml)
SYNTHETIC_MODEL = "synthetic"  # the trace_models name the anchors labels carry


@dataclass(frozen=True)
class StudyShape:
    """A seed's own scale (``docs/domain.md`` section 9)."""

    model_key: str
    dims: int
    layers: tuple[int, ...]
    units: int  # traces (anchors) or tasks (preferences) at fraction 1
    min_units: int
    seeds: int
    heads_per_layer: str  # what one layer fits, for the printout


SHAPES: dict[str, StudyShape] = {
    # R1-Distill-Qwen-14B: ~240 trace folders (a correct and an incorrect trace per problem), ~150 sentences each.
    "anchors": StudyShape("qwen14b-synthetic", 5120, (16, 32, 47), 240, 12, 20, "C grid x setting"),
    # Gemma-3-27B: 10k train + 3k eval tasks, prompt-last token, 9 layers (every 10% of 62).
    # Llama-3.1-8B: 1,000 chains of ~516 tokens (4 chains per problem), every token, layers 8-16, 7 lags.
    "backtracking": StudyShape("llama8b-synthetic", 4096, (8, 10, 12, 14, 16), 1_000, 20, 1,
                               "7 lags x 3 C values"),
    "preferences": StudyShape("gemma27b-synthetic", 5376, tuple(round(62 * k / 10) for k in range(1, 10)),
                              13_000, 80, 1, "10 alphas x 2 targets x (1 + topics) folds"),
}
STUDIES = tuple(SHAPES)
N_TOPICS = 10
# Effective dimension of the synthetic activations (real residual streams: a few hundred). The probe must
# estimate this many directions: at fraction 0.05 (~900 anchors training rows) rank 64 costs ~0.05 AUROC.
DEFAULT_RANK = 64


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# --------------------------------------------------------------------------- anchors


def _anchor_units(n_traces: int, seed: int) -> list[tuple[str, int, str, str]]:
    """(trace_key, sentences, problem_id, setting): a correct and an incorrect trace per problem."""
    lengths = np.random.default_rng([seed, 23]).integers(100, 201, n_traces)
    return [(f"p{t // 2:04d}-{('correct', 'incorrect')[t % 2]}", int(lengths[t]), f"p{t // 2:04d}",
             ("correct", "incorrect")[t % 2]) for t in range(n_traces)]


def _generate_anchors(shape: StudyShape, fraction: float, work: Path, seed: int, rank: int) -> dict[str, Any]:
    from ta_platform.benchmarks.synthetic_activations import LowRankActivations, noisy_labels, write_units

    n_traces = max(shape.min_units, 2 * round(shape.units * fraction / 2))
    units = _anchor_units(n_traces, seed)
    generator = LowRankActivations(shape.dims, shape.layers, rank=rank, seed=seed)
    written = write_units(work / "activations", shape.model_key, generator, [(u[0], u[1]) for u in units],
                          storage_dtype=STORAGE_DTYPE)
    meta = pd.DataFrame(units, columns=["trace_key", "n_chunks", "problem_id", "setting"])
    rows = written.rows.merge(meta, on="trace_key", validate="many_to_one")
    words = np.array([f"w{i}" for i in range(300)])
    rng = np.random.default_rng([seed, 29])
    rows["text"] = [" ".join(words[rng.integers(0, len(words), 8)]) for _ in range(len(rows))]
    rows["rel_position"] = rows["chunk_idx"] / (rows["n_chunks"] - 1)
    rows["anchor"] = noisy_labels(rows["planted"].to_numpy(), positive_rate=0.2, noise=0.5, seed=seed)
    rows["in_label_set"] = rows["chunk_idx"] < rows["n_chunks"] - 1  # the last chunk has no label, as in the study
    rows["model"] = SYNTHETIC_MODEL
    rows.to_parquet(work / "labels.parquet")
    return {"rows": len(rows), "units": n_traces, "disk_bytes": written.disk_bytes}


def anchors_probe_config(seeds: int):
    """The ``probes`` asset's config: ``ProbeSettings`` defaults (defs/probes/settings.py), no Dagster import."""
    from ta_platform.probing.config import ProbeConfig

    return ProbeConfig(cv_mode="auto", n_folds=5, min_test_problems=10,
                       probes=("position_baseline", "text_baseline", "linear_probe"), bootstrap_resamples=0,
                       mlp_epochs=60, null_permutations=20)


def _probe_anchors(shape: StudyShape, work: Path, seeds: int) -> dict[str, Any]:
    from ta_platform.probing.metrics import auroc
    from ta_platform.studies.activation_slices import iter_probe_slices
    from ta_platform.studies.anchor_probes import run_seeds, seed_folder

    labels = pd.read_parquet(work / "labels.parquet")
    config = anchors_probe_config(seeds)
    out = work / "probes"
    planted_of = labels.set_index(["trace_key", "chunk_idx"])["planted"]
    label_of = labels.set_index(["trace_key", "chunk_idx"])["anchor"]
    pairs, folds = [], set()
    heads = 0
    run_seeds(range(seeds), iter_probe_slices(labels, work / "activations", {shape.model_key: (SYNTHETIC_MODEL,)}),
              config, out, {"source": "synthetic"}, labels["problem_id"], log=lambda _: None)
    for seed in range(seeds):
        predictions = pd.read_parquet(seed_folder(out, seed) / "predictions.parquet")
        linear = predictions[predictions["probe"] == "linear_probe"]
        folds.update(linear["fold"].unique())
        for _, part in linear.groupby(["layer_key", "setting"]):
            evaluated = part[(part["split"] == "test") | (part["fold"] != "holdout")]
            key = pd.MultiIndex.from_frame(evaluated[["trace_key", "chunk_idx"]])
            y = label_of.loc[key].to_numpy()
            pairs.append((auroc(y, planted_of.loc[key].to_numpy()), auroc(y, evaluated["score"].to_numpy())))
            heads += len(config.l2_c_grid)
    planted, recovered = np.nanmean(np.array(pairs), axis=0)
    # cv_mode "auto" runs leave-problems-out below min_test_problems test problems: 5 folds' fits, not one
    scheme = "holdout" if folds == {"holdout"} else f"leave_problems_out ({len(folds - {'holdout'})} folds)"
    return {"planted": float(planted), "recovered": float(recovered), "heads": heads, "metric": "auroc",
            "slices": len(pairs), "scheme": scheme}


# --------------------------------------------------------------------------- preferences


def _generate_preferences(shape: StudyShape, fraction: float, work: Path, seed: int, rank: int) -> dict[str, Any]:
    from ta_platform.benchmarks.synthetic_activations import LowRankActivations, write_units
    from ta_platform.preferences.tasks import TOPICS

    n_tasks = max(shape.min_units, round(shape.units * fraction))
    n_train = round(n_tasks * 10 / 13)
    generator = LowRankActivations(shape.dims, shape.layers, rank=rank, seed=seed)
    ids = [f"task{t:05d}" for t in range(n_tasks)]
    written = write_units(work / "activations", shape.model_key, generator, [(i, 1) for i in ids],
                          storage_dtype=STORAGE_DTYPE)
    rng = np.random.default_rng([seed, 31])
    topics = np.array(list(TOPICS)[:N_TOPICS])[rng.integers(0, N_TOPICS, n_tasks)]
    planted = written.rows["planted"].to_numpy()
    pool = pd.DataFrame({"task_id": ids, "task_set": np.where(np.arange(n_tasks) < n_train, "train", "eval"),
                         "topic": topics, "planted": planted,
                         "mu": planted + 0.5 * rng.standard_normal(n_tasks)})
    pool.to_parquet(work / "pool.parquet")
    return {"rows": n_tasks, "units": n_tasks, "disk_bytes": written.disk_bytes}


def _probe_preferences(shape: StudyShape, work: Path, seeds: int) -> dict[str, Any]:
    from ta_platform.extraction.store import load_partition, partition_folder
    from ta_platform.preferences.utility_probes import pearson_r, split_halves, utility_probe_report

    pool = pd.read_parquet(work / "pool.parquet")
    features = {}
    for layer in shape.layers:  # as defs/preferences/assets.py _load_prompt_matrix: rows by task id, from the maps
        partition = load_partition(partition_folder(work / "activations", shape.model_key, f"L{layer}"))
        row_of = {key: row for row, key in enumerate(partition.index["trace_key"])}
        features[f"activations:{shape.model_key}/L{layer}"] = partition.rows([row_of[t] for t in pool["task_id"]])
    report = utility_probe_report(pool, pool[["task_id", "mu"]], features, seed=0)
    evals = pool[pool["task_set"] == "eval"]
    _, held = split_halves(len(evals), 0)
    planted = pearson_r(evals["mu"].to_numpy()[held], evals["planted"].to_numpy()[held])
    chosen = report[(report["target"] == "raw") & (report["scope"] == "in_distribution")
                    & (report["metric"] == "pearson_r")]
    folds = 1 + report.loc[report["scope"] == "held_out_topic", "held_out_topic"].nunique()
    return {"planted": float(planted), "recovered": float(chosen["value"].mean()), "metric": "pearson_r",
            "heads": len(shape.layers) * folds * 2 * 10, "scheme": f"all topics + {folds - 1} held-out topics"}


# --------------------------------------------------------------------------- backtracking


def _generate_backtracking(shape: StudyShape, fraction: float, work: Path, seed: int, rank: int) -> dict[str, Any]:
    from ta_platform.benchmarks.synthetic_activations import LowRankActivations, noisy_labels, write_units
    from ta_platform.extraction.registry import layer_key

    n_chains = max(shape.min_units, round(shape.units * fraction))
    lengths = np.random.default_rng([seed, 37]).integers(300, 733, n_chains)  # mean ~516 tokens
    ids = [f"chain{c:05d}" for c in range(n_chains)]
    generator = LowRankActivations(shape.dims, shape.layers, rank=rank, seed=seed)
    written = write_units(work / "activations", shape.model_key, generator, list(zip(ids, lengths.tolist(), strict=True)),
                          storage_dtype=STORAGE_DTYPE, layer_key=layer_key)
    rows = written.rows
    n_tokens = rows.groupby("trace_key")["chunk_idx"].transform("size").to_numpy()
    in_bt = noisy_labels(rows["planted"].to_numpy(), positive_rate=0.1, noise=0.5, seed=seed).astype(bool)
    previous = np.r_[False, in_bt[:-1]] & (rows["chunk_idx"].to_numpy() > 0)
    tokens = pd.DataFrame({
        "chain_id": rows["trace_key"], "token_idx": rows["chunk_idx"], "position": rows["chunk_idx"],
        "token_id": np.random.default_rng([seed, 41]).integers(0, 2000, len(rows)), "n_tokens": n_tokens,
        "rel_position": rows["chunk_idx"] / (n_tokens - 1), "in_backtracking": in_bt,
        "backtrack_onset": in_bt & ~previous, "section_index": 0, "planted": rows["planted"]})
    tokens.to_parquet(work / "tokens.parquet")
    pd.DataFrame({"chain_id": ids, "problem": [f"problem {c // 4}" for c in range(n_chains)]}).to_parquet(
        work / "chains.parquet")
    return {"rows": len(rows), "units": n_chains, "disk_bytes": written.disk_bytes}


def backtracking_config():
    """``BacktrackingSettings().lag_config()`` for a chains file (1,000 bootstrap draws), no Dagster import."""
    from ta_platform.chains.lag_probes import LagConfig

    return LagConfig(bootstrap_resamples=1000, null_permutations=5, tripwire_max_chains=60)


def _probe_backtracking(shape: StudyShape, work: Path, seeds: int) -> dict[str, Any]:
    from ta_platform.chains.intervals import margin_summary
    from ta_platform.chains.splits import dataset_split
    from ta_platform.probing.metrics import auroc
    from ta_platform.studies.backtracking import load_slice, margin_table, run_seed

    config = backtracking_config()
    tokens = pd.read_parquet(work / "tokens.parquet")
    chains = pd.read_parquet(work / "chains.parquet")
    planted = tokens.pop("planted").to_numpy()
    pairs, summaries = [], 0
    for seed in range(seeds):
        split = dataset_split(chains, seed, config.fractions)
        slices = (load_slice(shape.model_key, layer, tokens, work / "activations") for layer in shape.layers)
        result = run_seed(split, slices, config, log=lambda _: None)
        summaries += len(margin_summary(result.test_scores, margin_table(result.margins),
                                        n_resamples=config.bootstrap_resamples, level=config.ci_level))
        test = split.splits_of(tokens["chain_id"].astype(str).to_numpy()) == "test"
        planted_auroc = auroc(tokens["in_backtracking"].to_numpy()[test], planted[test])  # lag 0: every row a source
        probe = result.metrics[(result.metrics["probe"] == "linear_probe") & (result.metrics["metric"] == "auroc")
                               & (result.metrics["lag"] == 0)]
        pairs += [(planted_auroc, float(value)) for value in probe["value"]]
    planted_mean, recovered = np.mean(np.array(pairs), axis=0)
    return {"planted": float(planted_mean), "recovered": float(recovered), "metric": "auroc (lag 0)",
            "heads": seeds * len(shape.layers) * len(config.lags) * len(config.c_grid), "margin_rows": summaries,
            "scheme": "holdout (chains)"}


GENERATE = {"anchors": _generate_anchors, "backtracking": _generate_backtracking, "preferences": _generate_preferences}
PROBE = {"anchors": _probe_anchors, "backtracking": _probe_backtracking, "preferences": _probe_preferences}


# --------------------------------------------------------------------------- driver


def _child(options: dict[str, Any]) -> dict[str, Any]:
    """One stage of one study in this (fresh) interpreter."""
    import torch

    torch.set_num_threads(int(options.get("threads", 1)))
    shape, work = SHAPES[options["study"]], Path(options["work"])
    started = time.monotonic()
    if options["stage"] == "generate":
        result = GENERATE[options["study"]](shape, options["fraction"], work, options["seed"], options["rank"])
    else:
        result = PROBE[options["study"]](shape, work, options["seeds"])
    usage = resource.getrusage(resource.RUSAGE_SELF)  # CPU seconds: what a shared, loaded machine does not inflate
    return {**result, "seconds": round(time.monotonic() - started, 2), "peak_rss_gb": round(_peak_rss_gb(), 3),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}


def _run_child(options: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(options.get("threads", 1)), "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-m", "ta_platform.benchmarks.paper_scale", "--child",
                              json.dumps(options)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = child.communicate()
    except BaseException:  # interrupted or terminated: the child must not go on writing gigabytes we delete
        child.kill()
        child.wait()
        raise
    if child.returncode != 0:
        raise RuntimeError(f"paper-scale {options['study']} {options['stage']} failed:\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def run_study(study: str, fraction: float, work_dir: Path, *, seeds: int | None = None, seed: int = 0,
              threads: int = 1, rank: int = DEFAULT_RANK, keep: bool = False) -> dict[str, Any]:
    """Generate + write, then the probe stage, each in its own interpreter; the bench's per-study record."""
    shape = SHAPES[study]
    work = Path(work_dir) / f"{study}-f{fraction:g}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = {"study": study, "fraction": fraction, "work": str(work), "seed": seed, "threads": threads, "rank": rank,
            "seeds": shape.seeds if seeds is None else int(seeds)}
    try:
        generated = _run_child({**base, "stage": "generate"})
        probed = _run_child({**base, "stage": "probe"})
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return {"rows": generated["rows"], "units": generated["units"], "dims": shape.dims, "layers": len(shape.layers),
            "seeds": base["seeds"], "heads": probed["heads"],
            "seconds": round(generated["seconds"] + probed["seconds"], 1),
            "generate_seconds": generated["seconds"], "probe_seconds": probed["seconds"],
            "generate_cpu_seconds": generated.get("cpu_seconds"), "probe_cpu_seconds": probed.get("cpu_seconds"),
            "peak_rss_gb": max(generated["peak_rss_gb"], probed["peak_rss_gb"]),
            "generate_peak_rss_gb": generated["peak_rss_gb"], "probe_peak_rss_gb": probed["peak_rss_gb"],
            "disk_gb": round(generated["disk_bytes"] / 2**30, 3), "metric": probed["metric"], "scheme": probed["scheme"],
            "planted": round(probed["planted"], 4), "recovered": round(probed["recovered"], 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_child(json.loads(args.child))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
