"""``ta-platform bench judge``: the platform's logit judge vs the generate-and-parse recipe, same pairs.

Both judges use the same registry model (default: the real ``smollm2-135m``), loaded once through
``ComputeResource.loaded(spec, lm_head=True)`` (registry dtype, device and revision), and the same
comparison pairs of the embedded task pool, drawn as active learning's first round asks them (a
random 4-regular graph: every task in 4 comparisons). The platform judge reads two option logits per order
(shared-prefix key/value cache, batched suffixes, no generation); the naive judge generates up to 8
tokens greedily per order, one prompt at a time, and parses the letter. Printed: comparisons per
second for each (a comparison = one pair, both orders), the speedup, and their agreement: per
(pair, order), the platform's choice (the larger of the two option probabilities) against the
letter the naive judge wrote (orders where it wrote no letter are counted in ``naive_unparsed``
and left out). The last line is one JSON object. Target: speedup >= 5x.
"""

from __future__ import annotations

import argparse
import json
import time

TARGET_SPEEDUP = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m", help="registry model key (default: the real model)")
    parser.add_argument("--pairs", type=int, default=48, help="comparison pairs (both orders each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--system-prompt", default=None, help="optional system prompt for both judges")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)


def sample_pairs(n_pairs: int, seed: int):
    """Pairs as active learning first asks them: the edges of a seeded random 4-regular graph over
    ``n_pairs / 2`` tasks of the embedded task pool (each task in 4 comparisons)."""
    import numpy as np

    from ta_platform.preferences.active_learning import random_regular_pairs
    from ta_platform.preferences.judges import tasks_from_pool
    from ta_platform.preferences.tasks import generate_task_pool

    n_tasks = max(6, n_pairs // 2)
    pool = generate_task_pool(max(200, n_tasks), 10, seed=seed)
    rng = np.random.default_rng(seed)
    tasks = [list(tasks_from_pool(pool).values())[i] for i in rng.choice(len(pool), n_tasks, replace=False)]
    edges = random_regular_pairs(n_tasks, 4, rng)[:n_pairs]
    return [(tasks[a], tasks[b]) for a, b in edges.tolist()]


def compare(platform_orders, naive_orders) -> dict[str, float]:
    """Agreement of per-order choices; the naive judge's 0.5 (no letter) is left out and counted."""
    import numpy as np

    platform = np.concatenate(platform_orders)
    naive = np.concatenate(naive_orders)
    parsed = naive != 0.5
    agree = (platform[parsed] > 0.5) == (naive[parsed] > 0.5)
    return {"agreement": float(agree.mean()) if parsed.any() else float("nan"),
            "naive_unparsed": int((~parsed).sum()), "n_orders": int(len(naive))}


def run(args: argparse.Namespace) -> int:
    import torch

    from ta_platform.defs.compute import ComputeResource
    from ta_platform.preferences.judges import GenerateParseJudge, HFLogitJudge

    torch.set_num_threads(args.threads)
    compute = ComputeResource()
    spec = compute.registry()[args.model]
    pairs = sample_pairs(args.pairs, args.seed)
    with compute.loaded(spec, lm_head=True) as held:
        print(f"judge model {args.model} on {held.device} ({held.dtype_name}); {len(pairs)} pairs, both orders",
              flush=True)
        platform = HFLogitJudge(held.model, held.tokenizer, args.system_prompt, batch_size=args.batch_size)
        platform.order_probabilities(pairs[:2])  # warm-up (allocator, kernels) outside the timing
        started = time.perf_counter()
        platform_orders = platform.order_probabilities(pairs)
        platform_seconds = time.perf_counter() - started
        print(f"platform (option logits, shared prefix cache): {platform_seconds:.2f} s", flush=True)
        naive = GenerateParseJudge(held.model, held.tokenizer, args.system_prompt)
        started = time.perf_counter()
        naive_orders = naive.order_choices(pairs)
        naive_seconds = time.perf_counter() - started
        print(f"naive (generate 8 tokens greedily per order, parse): {naive_seconds:.2f} s", flush=True)
    result = {"model": args.model, "n_pairs": len(pairs), "threads": args.threads,
              "platform_seconds": platform_seconds, "naive_seconds": naive_seconds,
              "platform_comparisons_per_s": len(pairs) / platform_seconds,
              "naive_comparisons_per_s": len(pairs) / naive_seconds,
              **compare(platform_orders, naive_orders)}
    result["speedup_vs_naive"] = result["platform_comparisons_per_s"] / result["naive_comparisons_per_s"]
    result["target_speedup_met"] = result["speedup_vs_naive"] >= TARGET_SPEEDUP
    print(f"platform {result['platform_comparisons_per_s']:.1f} comparisons/s, naive "
          f"{result['naive_comparisons_per_s']:.2f} comparisons/s: {result['speedup_vs_naive']:.1f}x; "
          f"agreement {result['agreement']:.3f} over {result['n_orders'] - result['naive_unparsed']} parsed orders")
    print(json.dumps(result, sort_keys=True, default=float))
    return 0
