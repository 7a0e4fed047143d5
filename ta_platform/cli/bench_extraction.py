"""``ta-platform bench extraction``: the naive extraction path against the platform path, side by side.

Why: the platform path's claims (stops at the deepest layer, one pass for many layers, vectorised
pooling, near the hardware limit) are only worth what a measurement on the same traces, model and
run says. Reports tokens/s of the naive path (one trace at a time, ``output_hidden_states=True`` on
the whole causal LM, a Python loop per sentence), of the platform path, and of a bare forward
through the same layers on the same batches (no hooks, pooling or storage: the compute floor), for
the middle layer and for four layers over depth; checks both paths give the same embeddings.
By default the model is built from config with seeded random weights and the traces are synthetic
and deterministic. ``--model KEY`` benchmarks a registry model instead (e.g. the pretrained
``smollm2-135m``) on real traces of its trace folders: ``../shared/realdata/math-rollouts`` when
present, else the embedded dataset (``--data`` chooses), taking the ``--traces`` shortest traces so
a CPU run stays short. ``--json``: the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

TARGETS = {"speedup_vs_naive": 1.8, "fraction_of_bare_forward": 0.9, "multi_layer_cost_ratio": 1.1}
FOUR_LAYER_FRACTIONS = (0.2, 0.4, 0.6, 0.8)
DEFAULT_PEAK_TFLOPS_GPU = 790.0  # bf16 dense, measured on H100/H200 (docs/domain.md section 6)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) | bfloat16 | float32")
    parser.add_argument("--arch", choices=["qwen2", "llama"], default="qwen2")
    parser.add_argument("--shape", choices=["tiny", "8b", "14b"], default="tiny",
                        help="tiny = CPU-sized; 8b/14b = DeepSeek-R1-Distill Llama-8B / Qwen-14B shapes (GPU)")
    parser.add_argument("--model", default=None,
                        help="a registry model key (e.g. smollm2-135m): benchmark it on real traces instead of a "
                             "random model on synthetic ones")
    parser.add_argument("--data", default="auto",
                        help="with --model: auto (../shared/realdata/math-rollouts if present, else embedded) | "
                             "embedded | a folder in the math-rollouts layout")
    parser.add_argument("--traces", type=int, default=None,
                        help="number of traces (default 8 synthetic; with --model the 2 shortest real traces)")
    parser.add_argument("--min-sentences", type=int, default=30)
    parser.add_argument("--max-sentences", type=int, default=70)
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds; each round times every path once; the best round of each path counts "
                             "(default 3; 1 with --model, to keep a CPU run near 2 minutes)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--token-budget", type=int, default=-1,
                        help="padded tokens per forward for the platform path (-1 = the device default)")
    parser.add_argument("--compare-budget", type=int, default=None,
                        help="also time the platform path with this budget (0 = skip; default 8192, 0 with --model)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help=f"peak FLOP/s for the FLOP-limit report (default {DEFAULT_PEAK_TFLOPS_GPU:g} on CUDA)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def _timed_rounds(paths: dict[str, Callable[[], Any]], rounds: int,
                  sync: Callable[[], None]) -> tuple[dict[str, float], dict[str, Any]]:
    """Best-of-``rounds`` seconds per path, timing every path once per round (interleaved).

    Why interleaved: on a shared machine the load drifts; timing each path in every round spreads
    the drift over all paths instead of penalising whichever ran during a busy spell.
    """
    best = {name: float("inf") for name in paths}
    outputs: dict[str, Any] = {}
    for _ in range(max(1, rounds)):
        for name, fn in paths.items():
            sync()
            start = time.perf_counter()
            outputs[name] = fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outputs


@contextlib.contextmanager
def _only_first_layers(base: Any, n: int) -> Iterator[None]:
    """Temporarily keep only blocks ``0..n-1``: the bare forward through the same layers."""
    import torch

    full = base.layers
    base.layers = torch.nn.ModuleList(list(full)[:n])
    try:
        yield
    finally:
        base.layers = full


def _bare_forward(model: Any, prepared: list[Any], batches: list[list[int]], deepest: int) -> None:
    import torch

    from ta_platform.extraction.extractor import pad_batch

    base = model.base_model
    device = next(model.parameters()).device
    with torch.inference_mode(), _only_first_layers(base, deepest + 1):
        for batch in batches:
            input_ids, mask = pad_batch([prepared[i] for i in batch], device)
            base(input_ids=input_ids, attention_mask=mask, use_cache=False)


def _params_up_to(model: Any, deepest: int) -> int:
    """Matmul parameters of blocks ``0..deepest`` (embeddings are a lookup, not FLOPs)."""
    return sum(p.numel() for block in model.base_model.layers[: deepest + 1] for p in block.parameters())


@dataclass
class BenchSetup:
    """The model, tokenizer and traces one bench run times, and how to describe them."""

    model: Any
    tokenizer: Any
    traces: list[Any]
    n_layers: int
    hidden_size: int
    name: str  # "qwen2 shape=tiny" or "smollm2-135m (package_gguf, pretrained)"
    data: str  # where the traces came from
    report: dict[str, Any]  # fields added to the JSON report


def _synthetic_setup(args: argparse.Namespace, device: str, dtype_name: str) -> BenchSetup:
    """A random-weight model of ``--arch``/``--shape`` on deterministic synthetic traces."""
    from ta_platform.extraction.device import torch_dtype
    from ta_platform.extraction.extractor import TraceInput
    from ta_platform.extraction.synthetic import synthetic_traces
    from ta_platform.extraction.tiny_models import build_tokenizer, model_config, random_causal_lm

    tokenizer = build_tokenizer(args.arch)
    config = model_config(args.arch, args.shape, tokenizer)
    model = random_causal_lm(config, seed=0, dtype=torch_dtype(dtype_name), device=device)
    traces = [TraceInput(t.key, t.text, t.char_spans)
              for t in synthetic_traces(args.traces or 8, args.min_sentences, args.max_sentences, seed=7)]
    return BenchSetup(model, tokenizer, traces, config.num_hidden_layers, config.hidden_size,
                      f"{args.arch} shape={args.shape}", "synthetic", {"arch": args.arch, "shape": args.shape})


def _trace_folder(choice: str) -> str:
    """``auto`` -> the shared real traces if present, else ``embedded``; anything else as given."""
    from ta_platform.common.paths import REPO_ROOT

    if choice != "auto":
        return choice
    real = REPO_ROOT.parent / "shared" / "realdata" / "math-rollouts"
    return str(real) if real.is_dir() else "embedded"


def _registry_setup(args: argparse.Namespace, device: str, dtype_name: str) -> BenchSetup:
    """The registry model ``--model`` (loaded like the platform loads it, with its LM head for the naive
    path) on the ``--traces`` shortest aligned traces of its trace folders."""
    from ta_platform.anchors.spans import char_span_table
    from ta_platform.anchors.trace_table import trace_snapshot
    from ta_platform.extraction.loading import load_causal_lm
    from ta_platform.extraction.registry import get_model_spec
    from ta_platform.rollouts.sources import load_traces, source_from_spec
    from ta_platform.studies.sentence_extraction import sentence_trace_inputs

    spec = get_model_spec(args.model)
    start = time.perf_counter()
    model, tokenizer = load_causal_lm(spec, device=device, dtype=dtype_name)
    load_seconds = time.perf_counter() - start
    data = _trace_folder(args.data)
    loaded, _ = load_traces(source_from_spec(data), models=list(spec.trace_models), splits=None, problem_ids="all")
    snapshot = trace_snapshot(loaded)
    char_spans, _ = char_span_table(snapshot)
    inputs = sentence_trace_inputs(snapshot, char_spans, spec.trace_models, spec.max_problems)
    if not inputs:
        raise SystemExit(f"no aligned traces of {list(spec.trace_models)} in {data}")
    length = {t.key: len(tokenizer(t.text)["input_ids"]) for t in inputs}
    traces = sorted(inputs, key=lambda t: (length[t.key], t.key))[: args.traces or 2]
    return BenchSetup(model, tokenizer, traces, spec.num_layers, int(model.config.hidden_size),
                      f"{spec.key} ({spec.source}: {spec.model_id}, {'pretrained' if spec.pretrained else 'random'})",
                      f"{data} ({len(traces)} shortest of {len(inputs)} traces)",
                      {"model_key": spec.key, "model_id": spec.model_id, "pretrained": spec.pretrained,
                       "data": data, "load_seconds": load_seconds})


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ta_platform.extraction.batching import default_token_budget, plan_batches
    from ta_platform.extraction.device import select_device, select_dtype_name
    from ta_platform.extraction.extractor import extract_sentence_embeddings, prepare_traces
    from ta_platform.extraction.naive import naive_sentence_embeddings
    from ta_platform.extraction.registry import resolve_layer, resolve_layers

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    dtype_name = select_dtype_name(device, args.dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    say = print
    setup = (_registry_setup if args.model else _synthetic_setup)(args, device, dtype_name)
    model, tokenizer, traces, n_layers = setup.model, setup.tokenizer, setup.traces, setup.n_layers
    repeats = args.repeats or (1 if args.model else 3)
    compare_budget = args.compare_budget if args.compare_budget is not None else (0 if args.model else 8192)
    middle = resolve_layer(0.5, n_layers)
    four = resolve_layers(list(FOUR_LAYER_FRACTIONS), n_layers)
    budget = default_token_budget(device) if args.token_budget < 0 else args.token_budget
    prepared, _ = prepare_traces(tokenizer, traces, max_length=None)
    batches = plan_batches([len(p.input_ids) for p in prepared], budget)
    n_tokens = sum(len(p.input_ids) for p in prepared)
    n_sentences = sum(len(t.char_spans) for t in traces)
    say(f"model: {setup.name} layers={n_layers} hidden={setup.hidden_size} "
        f"params={sum(p.numel() for p in model.parameters()) / 1e6:.1f}M device={device} dtype={dtype_name} "
        f"threads={torch.get_num_threads()}")
    if "load_seconds" in setup.report:
        say(f"load: {setup.report['load_seconds']:.1f} s (registry load, conversion included if it ran)")
    say(f"data: {setup.data}: {len(traces)} traces, {n_sentences} sentences, {n_tokens} tokens; platform token "
        f"budget={budget} ({len(batches)} batches); middle layer L{middle}; four layers {[f'L{i}' for i in four]}")

    def platform(layers: list[int], token_budget: int = budget) -> Any:
        return extract_sentence_embeddings(model, tokenizer, traces, layers, token_budget=token_budget)

    # warm-up (allocator, kernels, lazy imports) on a slice of the data
    extract_sentence_embeddings(model, tokenizer, traces[:1], four, token_budget=budget)
    naive_sentence_embeddings(model, tokenizer, traces[:1], [middle])

    paths: dict[str, Callable[[], Any]] = {
        "naive_mid": lambda: naive_sentence_embeddings(model, tokenizer, traces, [middle]),
        "naive_four": lambda: naive_sentence_embeddings(model, tokenizer, traces, four),
        "mid": lambda: platform([middle]),
        "four": lambda: platform(four),
        "deepest": lambda: platform([max(four)]),
        "bare_mid": lambda: _bare_forward(model, prepared, batches, middle),
        "bare_four": lambda: _bare_forward(model, prepared, batches, max(four)),
    }
    if compare_budget and compare_budget != budget:
        paths["batched"] = lambda: platform([middle], compare_budget)
    seconds, outputs = _timed_rounds(paths, repeats, sync)
    t_naive_mid, t_naive_four, t_mid, t_four, t_deepest, t_bare_mid, t_bare_four = (
        seconds[k] for k in ("naive_mid", "naive_four", "mid", "four", "deepest", "bare_mid", "bare_four"))
    t_batched = seconds.get("batched")
    naive_mid, naive_four, fast_mid, fast_four = (outputs[k] for k in ("naive_mid", "naive_four", "mid", "four"))

    diffs = [float(np.abs(fast_mid.embeddings[middle] - naive_mid[middle]).max())]
    diffs += [float(np.abs(fast_four.embeddings[layer] - naive_four[layer]).max()) for layer in four]
    tps = lambda seconds: n_tokens / seconds  # noqa: E731
    report: dict[str, Any] = {
        **setup.report, "device": device, "dtype": dtype_name, "threads": torch.get_num_threads(), "repeats": repeats,
        "n_traces": len(traces), "n_sentences": n_sentences, "n_tokens": n_tokens, "token_budget": budget,
        "middle_layer": middle, "four_layers": four,
        "naive_middle_tokens_per_s": tps(t_naive_mid), "platform_middle_tokens_per_s": tps(t_mid),
        "bare_forward_middle_tokens_per_s": tps(t_bare_mid),
        "naive_four_tokens_per_s": tps(t_naive_four), "platform_four_tokens_per_s": tps(t_four),
        "platform_deepest_of_four_tokens_per_s": tps(t_deepest), "bare_forward_deepest_of_four_tokens_per_s": tps(t_bare_four),
        "speedup_vs_naive": t_naive_mid / t_mid, "speedup_vs_naive_four_layers": t_naive_four / t_four,
        "fraction_of_bare_forward": t_bare_mid / t_mid, "fraction_of_bare_forward_four_layers": t_bare_four / t_four,
        "multi_layer_cost_ratio": t_four / t_deepest, "max_abs_diff": max(diffs),
    }
    if t_batched is not None:
        report["compare_budget"] = compare_budget
        report["platform_middle_tokens_per_s_at_compare_budget"] = tps(t_batched)
        report["batching_speedup_at_compare_budget"] = t_mid / t_batched
    peak = args.peak_tflops or (DEFAULT_PEAK_TFLOPS_GPU if device.startswith("cuda") else None)
    if peak:
        for name, layer, seconds in (("middle", middle, t_mid), ("four", max(four), t_four)):
            limit = peak * 1e12 / (2 * _params_up_to(model, layer))
            report[f"flop_limit_{name}_tokens_per_s"] = limit
            report[f"fraction_of_flop_limit_{name}"] = tps(seconds) / limit
        report["peak_tflops"] = peak

    say(f"{'path':<44}{'seconds':>9}{'tokens/s':>12}")
    rows = [("naive, middle layer", t_naive_mid), ("platform, middle layer", t_mid),
            ("bare forward to middle layer", t_bare_mid), ("naive, four layers", t_naive_four),
            ("platform, four layers (one pass)", t_four), ("platform, deepest of the four only", t_deepest),
            ("bare forward to deepest of the four", t_bare_four)]
    if t_batched is not None:
        rows.append((f"platform, middle layer, budget {compare_budget}", t_batched))
    for label, seconds in rows:
        say(f"{label:<44}{seconds:>9.2f}{tps(seconds):>12.0f}")
    say(f"max abs diff naive vs platform (all layers): {max(diffs):.3g}")
    for name, target in TARGETS.items():
        value = report[name]
        ok = value <= target if name == "multi_layer_cost_ratio" else value >= target
        say(f"{name}: {value:.3f} (target {'<=' if name == 'multi_layer_cost_ratio' else '>='} {target}) "
            f"{'ok' if ok else 'MISSED'}")
    if peak:
        say(f"FLOP limit at {peak:g} TFLOP/s: middle {report['flop_limit_middle_tokens_per_s']:.0f} tokens/s "
            f"(platform reaches {report['fraction_of_flop_limit_middle']:.1%})")
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0
