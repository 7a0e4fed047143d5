"""Peak memory of extraction at two dataset sizes: it must follow the longest trace, not the dataset.

Why a measurement and not a test: peak RSS depends on the allocator, the libraries and the machine;
what matters is how it grows. ``measure_extraction_memory(n)`` extracts ``n`` and ``factor * n``
synthetic token-level traces (one row per token, like the backtracking and needle studies) with a
"wide" tiny Llama (the embedded tokenizer, random weights, 2 layers of hidden 1024: rows as fat as a
real model's relative to the row index, forward passes still cheap), each size in a fresh
interpreter, and reports per size the peak RSS above the loaded model's baseline for two phases:
- ``extract``: forward passes, cache entries and partitions (``extract_to_partitions`` on an empty cache);
- ``writer``: the partitions rebuilt from the cache alone (the writer path: entries streamed into shards).
Beside them, the bytes of one layer in float32: an implementation that concatenates a layer grows its
peak by at least that much (twice, with the old copy to contiguous float32), a streaming one by the
row index only. ``helper BENCH`` puts this into ``ta-platform bench paper-scale``; by hand:
``python -m ta_platform.extraction.store_memory --traces 40 --factor 4``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Reset the kernel's high-water mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")


def _token_traces(tokenizer: Any, n_traces: int, sentences: tuple[int, int], seed: int) -> list[Any]:
    from ta_platform.extraction.extractor import TraceInput
    from ta_platform.extraction.spans import tokenize_with_offsets
    from ta_platform.extraction.synthetic import synthetic_traces

    traces = []
    for trace in synthetic_traces(n_traces, *sentences, seed=seed):
        ids, _ = tokenize_with_offsets(tokenizer, trace.text, add_special_tokens=True, item=trace.key)
        traces.append(TraceInput(trace.key, trace.text, token_positions=list(range(len(ids)))))
    return traces


def wide_llama(folder: str | os.PathLike[str], *, hidden: int = 1024, storage_dtype: str = "float32",
               seed: int = 0) -> Any:
    """The ``ModelSpec`` of a 2-layer random Llama of width ``hidden`` with the embedded tokenizer, saved
    once under ``folder`` (one builder at a time: the measurement's sizes run one after the other)."""
    from ta_platform.extraction.registry import ModelSpec
    from ta_platform.extraction.tiny_models import build_tokenizer, model_config, random_causal_lm

    target = Path(folder) / f"wide-llama-{hidden}-s{seed}"
    if not (target / "tokenizer.json").exists():  # written last: a build killed before it is redone
        tokenizer = build_tokenizer("llama")
        config = model_config("llama", "embedded", tokenizer)
        config.update({"hidden_size": hidden, "intermediate_size": hidden, "num_hidden_layers": 2,
                       "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": hidden // 8})
        random_causal_lm(config, seed=seed).save_pretrained(target)
        tokenizer.save_pretrained(target)
    return ModelSpec(key=target.name, source="local", num_layers=2, layers=(1,), trace_models=("synthetic",),
                     revision="local", path=target, storage_dtype=storage_dtype)


def _child(options: dict[str, Any]) -> dict[str, Any]:
    """One size, in this (fresh) process: the numbers ``measure_extraction_memory`` collects."""
    import torch

    from ta_platform.extraction.loading import load_model
    from ta_platform.extraction.resumable import extract_to_partitions

    torch.set_num_threads(1)
    spec = wide_llama(options["model_cache"], hidden=options["hidden"], storage_dtype=options["storage_dtype"])
    loaded = load_model(spec, device="cpu")
    traces = _token_traces(loaded.tokenizer, options["n_traces"], tuple(options["sentences"]), options["seed"])
    root = Path(options["root"])
    layers = list(options["layers"])
    result: dict[str, Any] = {"n_traces": len(traces), "layers": len(layers),
                              "hidden": int(loaded.model.config.hidden_size),
                              "longest_trace_rows": max(len(t.token_positions) for t in traces)}
    for phase in ("extract", "writer"):
        if phase == "writer":
            for layer in layers:
                shutil.rmtree(root / spec.key / f"L{layer}")
        _reset_peak()
        baseline = _status_kb("VmRSS")
        summary = extract_to_partitions(loaded, traces, layers, root, token_budget=0)
        result[f"{phase}_peak_above_baseline_mb"] = round((_status_kb("VmHWM") - baseline) / 1024, 1)
        result[f"{phase}_traces_computed"] = summary.traces_computed
    result["rows"] = summary.n_rows
    result["layer_float32_mb"] = round(summary.n_rows * result["hidden"] * 4 / 2**20, 1)
    return result


def measure_extraction_memory(n_traces: int = 40, *, factor: int = 4, sentences: tuple[int, int] = (40, 80),
                              layers: tuple[int, ...] = (0, 1), hidden: int = 1024, storage_dtype: str = "float32",
                              work_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Extract ``n_traces`` and ``factor * n_traces`` traces (each in a fresh interpreter); per size the
    peak RSS above baseline of the extract and writer phases, and the growth between the two sizes."""
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="store-memory-")) if owned else Path(work_dir)
    try:
        sizes = {}
        for n in (n_traces, factor * n_traces):
            options = {"n_traces": n, "sentences": list(sentences), "layers": list(layers), "seed": seed, "hidden": hidden,
                       "storage_dtype": storage_dtype, "root": str(work / f"n{n}"), "model_cache": str(work / "models")}
            done = subprocess.run([sys.executable, "-m", "ta_platform.extraction.store_memory", "--child", json.dumps(options)],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if done.returncode != 0:
                raise RuntimeError(f"store memory measurement for {n} traces failed:\n{done.stderr[-3000:]}")
            sizes[n] = json.loads(done.stdout.strip().splitlines()[-1])
        small, large = sizes[n_traces], sizes[factor * n_traces]
        growth = {phase: round(large[f"{phase}_peak_above_baseline_mb"] - small[f"{phase}_peak_above_baseline_mb"], 1)
                  for phase in ("extract", "writer")}
        return {"storage_dtype": storage_dtype, "small": small, "large": large,
                "layer_float32_growth_mb": round(large["layer_float32_mb"] - small["layer_float32_mb"], 1),
                "peak_growth_mb": growth}
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=40)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--storage-dtype", default="float32")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    result = measure_extraction_memory(args.traces, factor=args.factor, hidden=args.hidden,
                                       storage_dtype=args.storage_dtype)
    small, large = result["small"], result["large"]
    print(f"{'':32}{small['n_traces']:>10} traces{large['n_traces']:>10} traces")
    for name in ("rows", "longest_trace_rows", "layer_float32_mb", "extract_peak_above_baseline_mb",
                 "writer_peak_above_baseline_mb"):
        print(f"{name:32}{small[name]:>17}{large[name]:>17}")
    print(f"one layer grew by {result['layer_float32_growth_mb']} MB (float32); peak grew by "
          f"{result['peak_growth_mb']['extract']} MB (extract), {result['peak_growth_mb']['writer']} MB (writer)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
