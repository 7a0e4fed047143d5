"""``ta-platform materialize``: the main job, as a sequence of runs in the project's Dagster instance.

Why several runs: Dagster puts assets with different partitions definitions in different runs
(unpartitioned tables, model x layer activations, seed-partitioned probes, then the unpartitioned
aggregates). Each stage is one run recorded in ``storage/dagster_home``, visible in the UI, and
partitioned stages run all their partitions in ONE run (single-run backfill policy), so all
layers of a model come from one forward pass.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", action="append", default=None,
                        help="run only these stages (data, activations, prompts, probes, summary, gate); default: all")
    parser.add_argument("--study", default=None,
                        help="run one study alone with what it needs upstream (anchors, or a plugged-in study: "
                             "listed in defs/studies.py); default: the main job")
    parser.add_argument("--seeds", default=None, help="seed range for the probes stage, e.g. 0...4")
    parser.add_argument("--pilot", type=int, default=0, metavar="N",
                        help="first run the whole graph on N problems in <storage>/pilot; stop if its gate fails")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the extraction plan (ta-platform plan) and run nothing")


def run(args: argparse.Namespace) -> int:
    from ta_platform.common.instance import ensure_dagster_home

    if args.dry_run:
        from ta_platform.cli import plan

        return plan.run(argparse.Namespace(json=False, device="auto"))
    if args.pilot:
        from ta_platform.cli.pilot import run_pilot

        if not run_pilot(args.pilot, _stage_arguments(args)):
            return 1
    home = ensure_dagster_home()
    import dagster as dg

    from ta_platform.definitions import MAIN_STAGES, STUDY_STAGES, defs
    from ta_platform.defs.run_recovery import StageGuard

    if args.study and args.study not in STUDY_STAGES:
        print(f"unknown study {args.study!r}; studies: {', '.join(sorted(STUDY_STAGES))}", file=sys.stderr)
        return 2
    stages = STUDY_STAGES[args.study] if args.study else MAIN_STAGES
    wanted = args.stage or [stage.name for stage in stages]
    with dg.DagsterInstance.get() as instance:
        print(f"Dagster instance: {home}", flush=True)
        guard = StageGuard(instance, log=lambda line: print(line, flush=True))  # crash safety: run_recovery.py
        failed = None
        for stage in stages:
            if stage.name not in wanted:
                continue
            if failed is not None and stage.name != "gate":
                print(f"[{stage.name}] not run: stage {failed!r} failed", flush=True)
                continue
            if not _run_stage(instance, guard, defs, stage, args.seeds):
                failed = stage.name
        if "gate" in wanted or (args.study and not args.stage):  # a --stage list names the gate to get it
            gate_status = _report_gate(instance, args.study)
            return 1 if failed else gate_status
        return 1 if failed else 0


def _run_stage(instance, guard, defs, stage, seeds: str | None) -> bool:
    """Run one stage's job in the project instance; print its outcome, failed checks and failed steps."""
    from ta_platform.common.instance import code_location_tags

    job = defs.resolve_job_def(stage.job_name)
    tags = stage.partition_tags(job, seeds=seeds)
    started = time.monotonic()
    print(f"[{stage.name}] running {stage.job_name} {tags or ''}", flush=True)
    guard.before(f"[{stage.name}] ", job)
    run_id = str(uuid.uuid4())
    with guard.watch(f"[{stage.name}] ", job, run_id):
        result = job.execute_in_process(instance=instance, tags=guard.tags({**code_location_tags(), **tags}),
                                        run_id=run_id, raise_on_error=False)
    elapsed = time.monotonic() - started
    failed_checks = [
        f"{e.asset_check_evaluation_data.asset_check_key.to_user_string()}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    print(f"[{stage.name}] run {result.run_id} {'succeeded' if result.success else 'FAILED'} "
          f"in {elapsed:.1f}s; failed checks: {failed_checks or 'none'}", flush=True)
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"  step {event.step_key} failed: {event.step_failure_data.error.message.strip()}",
                      file=sys.stderr)
    return result.success


def _report_gate(instance, study: str | None) -> int:
    """Print the release gate's verdict (the whole code location, or one study's checks) and return
    the exit status: 1 when a gated check failed, is missing, or was evaluated on older data."""
    from ta_platform.definitions import GATED_CHECK_KEYS, STUDY_CHECK_KEYS
    from ta_platform.defs.gate.checks import current_gate_verdict

    keys = STUDY_CHECK_KEYS[study] if study else GATED_CHECK_KEYS
    verdict, n_checks = current_gate_verdict(instance, keys)
    scope = f"study {study!r}" if study else "all studies"
    print(f"[gate] {scope}: {verdict.summary()} over {n_checks} checks", flush=True)
    for label, items in (("FAILING", verdict.failing), ("MISSING", verdict.missing), ("warning", verdict.warnings)):
        for item in items:
            print(f"  {label}: {item}", file=sys.stderr if label != "warning" else sys.stdout, flush=True)
    if study in (None, "anchors"):  # the scaling summary states the verdict this command reports
        from ta_platform.studies.anchor_summary import gate_line, restamp_reports

        restamp_reports(gate_line(verdict, n_checks), "ta-platform materialize")
    if not verdict.passed:
        print("[gate] the release gate FAILED: the reports under storage/reports/ are marked NOT RELEASED",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _stage_arguments(args: argparse.Namespace) -> list[str]:
    """The stage and seed arguments of this invocation, for the pilot's own run of the main job."""
    forwarded = [f"--stage={stage}" for stage in args.stage or []]
    return forwarded + ([f"--seeds={args.seeds}"] if args.seeds else [])
