"""``ta-platform materialize``: the main job, as a sequence of runs in the project's Dagster instance.

Why several runs: Dagster puts assets with different partitions definitions in different runs
(unpartitioned tables, model x layer activations, seed-partitioned probes, then the unpartitioned
aggregates). Each stage is one run recorded in ``storage/dagster_home``, visible in the UI, and
partitioned stages run all their partitions in ONE run (single-run backfill policy), so all
layers of a model come from one forward pass.

What the terminal shows (``cli/run_output.py``, ``common/progress.py``): per stage one start line,
live progress, one end line with its time and failed checks, then the gate and a table of each
study's headline. Dagster's event stream goes to the instance (the UI) and to the log file under
``<storage>/logs/``; ``--verbose`` streams it to the terminal as well. A failed step prints its
message and the log file's path, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import uuid

GATE_LINES = 10  # failing / missing / warning lines printed each; `ta-platform gate` lists them all


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
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="stream Dagster's event stream (DEBUG included) to the terminal too")


def run(args: argparse.Namespace) -> int:
    from ta_platform.common.instance import ensure_dagster_home

    if args.dry_run:
        from ta_platform.cli import plan

        return plan.run(argparse.Namespace(json=False, device="auto"))
    if args.pilot:
        from ta_platform.cli.pilot import run_pilot

        if not run_pilot(args.pilot, _stage_arguments(args)):
            return 1
    from ta_platform.cli import run_output

    if not args.verbose:
        run_output.quiet_libraries()
    home = ensure_dagster_home()
    import dagster as dg

    from ta_platform.common import progress
    from ta_platform.common.paths import storage_root
    from ta_platform.common.storage_lock import hold_storage
    from ta_platform.definitions import MAIN_STAGES, STUDY_STAGES, defs
    from ta_platform.defs.run_recovery import StageGuard

    if args.study and args.study not in STUDY_STAGES:
        print(f"unknown study {args.study!r}; studies: {', '.join(sorted(STUDY_STAGES))}", file=sys.stderr)
        return 2
    stages = STUDY_STAGES[args.study] if args.study else MAIN_STAGES
    wanted = args.stage or [stage.name for stage in stages]
    log_file = run_output.new_log_file()
    cli_defs = run_output.with_cli_loggers(defs)
    # One writer per storage: a second command waits here, naming the holder (common/storage_lock.py)
    with hold_storage(storage_root(), what="ta-platform " + " ".join(sys.argv[1:]), log=progress.say), \
            dg.DagsterInstance.get() as instance:
        print(f"Dagster instance {home}; full event log {log_file}", flush=True)
        guard = StageGuard(instance, log=progress.say)  # crash safety: run_recovery.py
        failed, skipped = None, []
        for stage in stages:
            if stage.name not in wanted:
                continue
            if failed is not None and stage.name != "gate":
                skipped.append(stage.name)
                continue
            _say_skipped(failed, skipped)
            if not _run_stage(instance, guard, cli_defs, stage, args, log_file):
                failed = stage.name
        _say_skipped(failed, skipped)
        status = 1 if failed else 0
        if "gate" in wanted or (args.study and not args.stage):  # a --stage list names the gate to get it
            status = _report_gate(instance, args.study) or status
            _print_headlines(instance, defs, args.study)
        return status


def _say_skipped(failed: str | None, skipped: list[str]) -> None:
    """One line for the stages not run after a failure (then forgets them)."""
    if skipped:
        print(f"not run, because stage {failed!r} failed: {', '.join(skipped)}", flush=True)
        skipped.clear()


def _run_stage(instance, guard, defs, stage, args: argparse.Namespace, log_file) -> bool:
    """Run one stage's job in the project instance: start line, progress, end line; errors to stderr."""
    from ta_platform.cli import run_output
    from ta_platform.common.instance import code_location_tags
    from ta_platform.common.progress import StageProgress

    job = defs.resolve_job_def(stage.job_name)
    tags = stage.partition_tags(job, seeds=args.seeds)
    span = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    detail = f"partitions {span[0]}...{span[1]}" if tags else ""
    run_id = str(uuid.uuid4())
    with StageProgress(stage.name, len(job.graph.nodes)) as display:
        display.start_line(stage.job_name, detail)
        guard.before(f"[{stage.name}] ", job)
        with guard.watch(f"[{stage.name}] ", job, run_id):
            result = job.execute_in_process(
                run_config=run_output.run_config(log_file, args.verbose), instance=instance,
                tags=guard.tags({**code_location_tags(), **tags}), run_id=run_id, raise_on_error=False)
        failed_checks = [
            f"{e.asset_check_evaluation_data.asset_check_key.to_user_string()}"
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
        ]
        display.finish(result.success, failed_checks, run_id)
    if not result.success:
        for line in _failure_lines(result, log_file):
            print(f"[{stage.name}] {line}", file=sys.stderr, flush=True)
    return result.success


def _failure_lines(result, log_file) -> list[str]:
    """Each failed step and its error's message (the first cause under Dagster's wrappers: the study's own words), the
    run's failure when no step failed, and where the full log is. Never the traceback."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            # the first error that is not Dagster's own wrapper: the study's words (a deeper cause, e.g. the
            # OSError under NoSpaceError, would drop the path the study's error names)
            while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            message = (error.message if error is not None else "no error recorded").strip().splitlines()
            shown = message[:8] + ([f"... ({len(message) - 8} more lines in the log)"] if len(message) > 8 else [])
            lines.append(f"step {event.step_key} failed: " + "\n    ".join(shown))
    if not lines:
        lines += [f"run failed: {e.message}" for e in result.all_events if e.event_type_value == "RUN_FAILURE"]
    lines.append(f"full log: {log_file} (and run {result.run_id} in the Dagster UI)")
    return lines


def _print_headlines(instance, defs, study: str | None) -> None:
    """Each study's headline (best cell, value, interval) and its gate verdict, from the instance."""
    import dagster as dg

    from ta_platform.cli.headlines import SUMMARY_ASSETS, headline_table
    from ta_platform.definitions import GATED_CHECK_KEYS, STUDY_CHECK_KEYS

    studies = [study] if study else list(SUMMARY_ASSETS)
    keys = dict(STUDY_CHECK_KEYS)
    groups = {spec.key: spec.group_name for spec in defs.resolve_all_asset_specs()}
    for name in studies:  # a study without its own check list (preferences): the checks of its summary's group
        if name not in keys and name in SUMMARY_ASSETS:
            group = groups.get(dg.AssetKey(SUMMARY_ASSETS[name]))
            keys[name] = [k for k in GATED_CHECK_KEYS if groups.get(k.asset_key) == group]
    lines = headline_table(instance, studies, keys)
    if lines:
        print("", *lines, sep="\n", flush=True)


def _report_gate(instance, study: str | None) -> int:
    """Print the release gate's verdict (the whole code location, or one study's checks) and return
    the exit status: 1 when a gated check failed, is missing, or was evaluated on older data."""
    from ta_platform.common import progress
    from ta_platform.definitions import GATED_CHECK_KEYS, STUDY_CHECK_KEYS
    from ta_platform.defs.gate.checks import current_gate_verdict

    keys = STUDY_CHECK_KEYS[study] if study else GATED_CHECK_KEYS
    verdict, n_checks = current_gate_verdict(instance, keys, wait=True, log=progress.say)
    scope = f"study {study!r}" if study else "all studies"
    print(f"[gate] {scope}: {verdict.summary()} over {n_checks} checks", flush=True)
    for label, items in (("FAILING", verdict.failing), ("MISSING", verdict.missing), ("warning", verdict.warnings)):
        stream = sys.stderr if label != "warning" else sys.stdout
        for item in items[:GATE_LINES]:
            print(f"  {label}: {item[:300]}", file=stream, flush=True)
        if len(items) > GATE_LINES:
            print(f"  ... {len(items) - GATE_LINES} more {label.lower()} (ta-platform gate lists them all)",
                  file=stream, flush=True)
    if study in (None, "anchors"):  # the scaling summary states the verdict this command reports
        from ta_platform.studies.anchor_summary import gate_line, restamp_reports

        restamp_reports(gate_line(verdict, n_checks), "ta-platform materialize")
    from ta_platform.cli.report import write_index  # the one page: gate, every study, provenance

    print(f"[report] {write_index(instance)}", flush=True)
    if not verdict.passed:
        print("[gate] the release gate FAILED: the reports under storage/reports/ are marked NOT RELEASED",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _stage_arguments(args: argparse.Namespace) -> list[str]:
    """The stage and seed arguments of this invocation, for the pilot's own run of the main job."""
    forwarded = [f"--stage={stage}" for stage in args.stage or []]
    return forwarded + ([f"--seeds={args.seeds}"] if args.seeds else []) + (["--verbose"] if args.verbose else [])
