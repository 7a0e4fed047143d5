"""``ta-platform bench paper-scale``: each study's probe stage at the seeds' own scale, time and memory.

Why: the seeds ran at 4,096-5,376 dims and tens to hundreds of thousands of rows; the embedded default
is 100-1000x smaller. This runs ``ta_platform.benchmarks.paper_scale`` (synthetic low-rank activations
with a planted signal, written through the activation store in bf16, then the study's own probe code)
per study and fraction, each stage in its own interpreter, and prints rows, dims, layers, heads, seconds
per stage, peak RSS, bytes on disk, planted vs recovered AUROC (or r) and the evaluation scheme that
ran. With three or more fractions it fits ``time = a * rows ** b`` and the same for peak memory
(``bench scale``'s fit), flagged when the fractions ran different schemes. With
``--extraction-traces N`` it also measures extraction's peak memory at N and 4N traces
(``extraction.store_memory``). The last line is JSON: ``{"fraction": F, "studies": {...}}`` (the
largest fraction; with several, ``runs`` and ``growth`` beside it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from ta_platform.benchmarks.paper_scale import DEFAULT_RANK, STUDIES, run_study
from ta_platform.cli.bench_scale import fit_power_law

JSON_KEYS = ("rows", "dims", "layers", "heads", "seconds", "peak_rss_gb", "disk_gb", "planted", "recovered")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", action="append", choices=STUDIES,
                        help=f"a study to run (repeat for several; default all: {', '.join(STUDIES)})")
    parser.add_argument("--fraction", action="append", type=float,
                        help="fraction of the seed's units (rows), dims unchanged; repeat for growth exponents "
                             "(default 1.0)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="probe seeds per study (default: the seed's own, 20 for anchors)")
    parser.add_argument("--rank", type=int, default=DEFAULT_RANK,
                        help="effective dimension of the synthetic activations (the planted signal lives in it)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads of each stage's process")
    parser.add_argument("--work-dir", default=None, help="where the synthetic partitions go (deleted after each run)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic partitions")
    parser.add_argument("--extraction-traces", type=int, default=0,
                        help="also measure extraction peak memory at N and 4N traces (0: skip)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")


def _line(study: str, r: dict) -> str:
    return (f"{study:<12}{r['rows']:>9} rows x {r['dims']} dims, {r['layers']} layers, {r['seeds']} seeds, "
            f"{r['heads']} heads, {r['scheme']}: generate+write {r['generate_seconds']:.1f}s ({r['generate_peak_rss_gb']:.2f} GB), "
            f"probe stage {r['probe_seconds']:.1f}s, {r['probe_cpu_seconds']} CPU s ({r['probe_peak_rss_gb']:.2f} GB), disk {r['disk_gb']:.2f} GB; "
            f"{r['metric']} planted {r['planted']:.4f} vs recovered {r['recovered']:.4f}")


def growth_of(records: list[dict]) -> dict:
    """Power-law exponents of time and peak RSS in rows over one study's fractions (smallest first).

    ``comparable`` is False when the fractions ran different evaluation schemes (anchors' ``cv_mode``
    "auto" runs five leave-problems-out folds below ``min_test_problems`` test problems and one holdout
    above): the exponent then compares different work, not the same work on more rows.
    """
    rows = [r["rows"] for r in records]
    growth = {what: round(fit_power_law(rows, [r[key] for r in records])[1], 3)
              for what, key in (("seconds", "seconds"), ("probe_seconds", "probe_seconds"),
                                ("peak_rss_gb", "peak_rss_gb"))}
    return {**growth, "comparable": len({r["scheme"] for r in records}) == 1}


def growth_line(study: str, growth: dict, fractions: list[float], schemes: list[str]) -> str:
    line = (f"growth {study}: time ~ rows^{growth['seconds']:.2f} (probe stage ^{growth['probe_seconds']:.2f}), "
            f"peak RSS ~ rows^{growth['peak_rss_gb']:.2f}")
    if growth["comparable"]:
        return line
    ran = ", ".join(f"{fraction:g}: {scheme}" for fraction, scheme in zip(fractions, schemes, strict=True))
    return f"{line}; NOT comparable: the fractions ran different schemes ({ran})"


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM (a job scheduler's stop, ``kill``) raises SystemExit, so every ``finally`` deletes its
    partitions and stops its child: a full-scale run leaves ~20 GB of bf16 files otherwise."""
    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ta-bench-paper-"))
    try:
        with _terminate_as_exit():
            return _run(args, work)
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    studies = args.study or list(STUDIES)
    fractions = sorted(set(args.fraction or [1.0]))
    if not args.json:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    runs = {}
    for fraction in fractions:
        runs[fraction] = {}
        for study in studies:
            result = run_study(study, fraction, work, seeds=args.seeds, threads=args.threads, rank=args.rank,
                               keep=args.keep)
            runs[fraction][study] = result
            if not args.json:
                print(f"[fraction {fraction:g}] " + _line(study, result), flush=True)
    last = fractions[-1]
    record = {"fraction": last, "studies": {s: {k: runs[last][s][k] for k in JSON_KEYS} for s in studies}}
    if len(fractions) >= 3:
        growth = {study: growth_of([runs[f][study] for f in fractions]) for study in studies}
        if not args.json:
            for study in studies:
                print(growth_line(study, growth[study], fractions, [runs[f][study]["scheme"] for f in fractions]))
        record["growth"] = growth
        record["runs"] = {str(f): {s: {k: runs[f][s][k] for k in JSON_KEYS} for s in studies} for f in fractions}
    if args.extraction_traces:
        from ta_platform.extraction.store_memory import measure_extraction_memory

        memory = measure_extraction_memory(args.extraction_traces, factor=4, storage_dtype="bfloat16")
        record["extraction_memory"] = memory
        if not args.json:
            small, large = memory["small"], memory["large"]
            print(f"extraction peak above baseline: {small['n_traces']} traces ({small['rows']} rows) "
                  f"{small['extract_peak_above_baseline_mb']} MB, {large['n_traces']} traces ({large['rows']} rows) "
                  f"{large['extract_peak_above_baseline_mb']} MB; one float32 layer grew by "
                  f"{memory['layer_float32_growth_mb']} MB, the peak by {memory['peak_growth_mb']['extract']} MB")
    print(json.dumps(record))
    return 0
