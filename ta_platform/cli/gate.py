"""``ta-platform gate``: the release gate's verdict from the project's Dagster instance.

Exit 0 when every gated check's latest evaluation passed, 1 otherwise (failing or missing listed).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    parser.add_argument("--study", default=None, help="only this study's checks (anchors, or a plugged-in study)")


def run(args: argparse.Namespace) -> int:
    import json

    from ta_platform.common.instance import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    from ta_platform.definitions import GATED_CHECK_KEYS, STUDY_CHECK_KEYS
    from ta_platform.defs.gate.checks import current_gate_verdict

    if args.study and args.study not in STUDY_CHECK_KEYS:
        print(f"unknown study {args.study!r}; studies: {', '.join(sorted(STUDY_CHECK_KEYS))}")
        return 2
    with dg.DagsterInstance.get() as instance:
        verdict, _ = current_gate_verdict(instance, STUDY_CHECK_KEYS[args.study] if args.study else GATED_CHECK_KEYS)
    if args.json:
        print(json.dumps({"passed": verdict.passed, "failing": verdict.failing, "missing": verdict.missing,
                          "warnings": verdict.warnings}))
    else:
        print(verdict.summary())
        for label, items in (("failing", verdict.failing), ("missing", verdict.missing), ("warning", verdict.warnings)):
            for item in items:
                print(f"  {label}: {item}")
    return 0 if verdict.passed else 1
