"""``ta-platform check-data PATH``: validate a local folder in the math-rollouts Hub layout.

Prints per trace: sentences, aligned sentences, anchors and faults (each naming its file).
Exit status 0 only when every trace passes, 1 when any has a fault; never a traceback for bad data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="folder laid out like uzaymacar/math-rollouts")
    parser.add_argument("--json", action="store_true", help="print one JSON object per trace")


def run(args: argparse.Namespace) -> int:
    from ta_platform.anchors.data_check import check_source
    from ta_platform.common.faults import DataFault
    from ta_platform.rollouts.sources import LocalRolloutSource

    if not args.path.is_dir():
        print(f"{args.path}: not a folder", file=sys.stderr)
        return 1
    try:
        reports = check_source(LocalRolloutSource(args.path))
    except DataFault as fault:
        print(str(fault), file=sys.stderr)
        return 1
    if not reports:
        print(f"{args.path}: no traces found in the math-rollouts layout", file=sys.stderr)
        return 1
    if args.json:
        for r in reports:
            print(json.dumps({"trace": r.trace_key, "sentences": r.n_sentences, "aligned": r.n_aligned,
                              "anchors": r.n_anchors, "faults": r.faults}))
    else:
        width = max(len(r.trace_key) for r in reports)
        print(f"{'trace':<{width}}  sentences  aligned  anchors  status")
        for r in reports:
            status = "ok" if r.ok else "FAULT"
            print(f"{r.trace_key:<{width}}  {r.n_sentences:>9}  {r.n_aligned:>7}  {r.n_anchors:>7}  {status}")
            for fault in r.faults:
                print(f"    {fault}")
    failed = sum(not r.ok for r in reports)
    print(f"{len(reports) - failed} of {len(reports)} traces pass", file=sys.stderr)
    return 1 if failed else 0
