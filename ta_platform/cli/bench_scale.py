"""``ta-platform bench scale``: how each stage of the main job grows with the number of traces.

Why: before running the full Hub dataset (~29k files, 91 GB) a user needs to know which stage
dominates and how it grows. This runs the thought-anchor stages (``materialize --study anchors``:
data, activations, prompts, probes, summary and the gate) on the embedded generator at several sizes,
each in a fresh temporary project (cold caches, its own Dagster instance), times every stage from the
command's own per-run report, and fits ``time = a * traces ** b`` per stage (least squares in log-log
space; ``b`` is the growth exponent). Stage times include a constant start-up per run (the code
location's import, Dagster's bookkeeping), so small sizes flatten the fitted exponent: the fixed part
is printed too (the fit's intercept at one trace). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE_LINE = re.compile(r"^\[(?P<stage>[\w-]+)\] run \S+ (?P<outcome>succeeded|FAILED) in (?P<seconds>[\d.]+)s", re.M)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", default="4,8,16",
                        help="embedded problems per size, comma separated (traces per model = 2 x problems)")
    parser.add_argument("--profile", default="tiny",
                        help="TA_MODEL_PROFILE for the runs (default tiny: the random-weight controls)")
    parser.add_argument("--study", default="anchors", help="which stages: a study of `materialize --study`")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")


def fit_power_law(sizes: list[float], times: list[float]) -> tuple[float, float]:
    """(a, b) of ``time = a * size ** b`` by least squares on logs; b = nan with fewer than two sizes."""
    pairs = [(math.log(s), math.log(t)) for s, t in zip(sizes, times, strict=True) if s > 0 and t > 0]
    if len(pairs) < 2:
        return (pairs[0][1] if pairs else math.nan, math.nan)
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    b = sum((x - mx) * (y - my) for x, y in pairs) / sxx if sxx else math.nan
    return math.exp(my - b * mx), b


def run_size(n_problems: int, profile: str, study: str, seed: int, root: Path) -> dict:
    """Generate ``n_problems`` embedded problems and run the study's stages on them; per-stage seconds."""
    from ta_platform.common.instance import prepare_dagster_home
    from ta_platform.rollouts.generator import generate_dataset

    data, storage = root / "data", root / "storage"
    generate_dataset(data, seed=seed, n_problems=n_problems)
    prepare_dagster_home(storage / "dagster_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TA_", "DAGSTER_"))}
    env.update({"TA_STORAGE": str(storage), "TA_DATA_SOURCE": str(data), "TA_MODEL_PROFILE": profile,
                "DAGSTER_HOME": str(storage / "dagster_home"), "TOKENIZERS_PARALLELISM": "false"})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ta_platform.cli.main", "materialize", "--study", study],
                          env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    stages = {m["stage"]: float(m["seconds"]) for m in STAGE_LINE.finditer(proc.stdout)}
    failed = [m["stage"] for m in STAGE_LINE.finditer(proc.stdout) if m["outcome"] == "FAILED"]
    traces_per_model = 2 * n_problems  # correct and incorrect base solution per problem
    return {"problems": n_problems, "traces_per_model": traces_per_model, "wall_s": round(wall, 1),
            "stages": stages, "failed_stages": failed, "returncode": proc.returncode,
            "log_tail": proc.stdout[-1500:] + proc.stderr[-1500:] if not stages else ""}


def run(args: argparse.Namespace) -> int:
    sizes = sorted({int(p) for p in args.problems.split(",") if p.strip()})
    results = []
    base = Path(tempfile.mkdtemp(prefix="ta-bench-scale-"))
    for n in sizes:
        result = run_size(n, args.profile, args.study, args.seed, base / f"p{n}")
        results.append(result)
        if not args.json:
            per_stage = ", ".join(f"{s} {t:.1f}s" for s, t in result["stages"].items())
            print(f"{result['traces_per_model']:>5} traces/model ({n} problems): {per_stage}; wall {result['wall_s']}s"
                  + (f"; FAILED {result['failed_stages']}" if result["failed_stages"] else ""), flush=True)
            if result["log_tail"]:
                print(result["log_tail"], file=sys.stderr)
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    stage_names = list(dict.fromkeys(s for r in results for s in r["stages"]))
    fits = {}
    for stage in stage_names:
        points = [(r["traces_per_model"], r["stages"][stage]) for r in results if stage in r["stages"]]
        a, b = fit_power_law([p[0] for p in points], [p[1] for p in points])
        fits[stage] = {"exponent": round(b, 3), "seconds_at_1_trace": round(a, 2)}
    if not args.json:
        print(f"\n{'stage':<12}" + "".join(f"{r['traces_per_model']:>10}" for r in results) + f"{'exponent':>10}")
        for stage in stage_names:
            cells = "".join(f"{r['stages'].get(stage, math.nan):>10.1f}" for r in results)
            print(f"{stage:<12}{cells}{fits[stage]['exponent']:>10.2f}")
    print(json.dumps({"benchmark": "scale", "profile": args.profile, "study": args.study,
                      "sizes": [{k: v for k, v in r.items() if k != "log_tail"} for r in results],
                      "fits": fits}))
    return 0 if all(r["returncode"] == 0 or r["stages"] for r in results) else 1
