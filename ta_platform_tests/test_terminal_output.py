"""What ``ta-platform materialize`` prints: progress lines, not Dagster's event stream.

The display (``common/progress.py``) is driven by a fake clock; the Dagster side runs real jobs in
a private instance through the CLI's logger (``cli/run_output.py``): every event lands in the log
file, none on the terminal, and a failing step reads as its own message plus the log's path.
"""


import io
import logging

import dagster as dg
import pytest

from ta_platform.cli import run_output
from ta_platform.cli.materialize import _failure_lines
from ta_platform.common import progress
from ta_platform.common.progress import StageProgress, count_line, parse_count


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_counts_are_read_from_the_platforms_progress_lines_only():
    assert parse_count(count_line("tiny-llama", 17, 48, "traces", 5.0)) == (17, 48, "traces")
    assert parse_count("seed 0: tiny-llama/L2/correct (1741 sentences)") is None  # a path, not a count
    assert parse_count("ratio 3/2 chains (1.0 chains/s)") is None  # done > total is not progress
    assert parse_count("tripwires tiny-llama/L2/correct: 5/5 pass") is None  # no rate: not a progress count
    assert parse_count("labelled 6540 sentences") is None


def test_plain_output_is_one_start_line_a_line_per_interval_and_one_end_line():
    clock, out = Clock(), io.StringIO()
    with StageProgress("probes", 4, out=out, live=False, interval=10.0, clock=clock) as stage:
        stage.start_line("probes_job", "partitions 0...2")
        stage.step_started("probes")
        for done in range(1, 49):  # 48 platform lines in 24 s: two interval lines, not 48
            clock.now += 0.5
            stage.note(count_line("tiny-llama", done, 48, "traces", clock.now))
        stage.step_finished("probes")
        clock.now += 1.0
        stage.finish(True, ["probes:split_leakage"], "1a2b")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[probes] running probes_job: 4 steps; partitions 0...2"
    assert lines[-1] == "[probes] run 1a2b succeeded in 25.0s; failed checks: probes:split_leakage"
    middle = lines[1:-1]
    assert len(middle) == 2, middle
    assert middle[0].startswith("[probes] 20/48 traces, 2.0 traces/s, ETA 14s, 10s so far")
    assert progress.current() is None  # the stage is closed: later lines print as they come


def test_the_next_models_count_gets_its_own_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    with StageProgress("activations", 1, out=out, live=False, interval=1000.0, clock=clock) as stage:
        stage.step_started("sentence_activations")
        clock.now = 10.0
        stage.note(count_line("tiny-llama", 48, 48, "traces", 10.0))  # the first model: 4.8 traces/s
        clock.now = 20.0
        stage.note(count_line("tiny-qwen2", 6, 48, "traces", 10.0))  # its clock runs from the last count (t=10)
        assert stage.status() == ("6/48 traces", "0.6 traces/s", "ETA 1m10s")  # a rate at once, not 0
        clock.now = 30.0
        stage.note(count_line("tiny-qwen2", 16, 48, "traces", 20.0))  # 16 traces in 20 s
        clock.now = 35.0  # a tick 5 s after the latest count
        assert stage.status() == ("16/48 traces", "0.8 traces/s", "ETA 35s")


def test_a_long_stage_spaces_its_lines_out():
    clock, out = Clock(), io.StringIO()
    with StageProgress("activations", 1, out=out, live=False, interval=10.0, clock=clock) as stage:
        for second in range(3600):  # an hour of a line a second: every 10 s would be 360 lines
            clock.now = float(second)
            stage.note(count_line("tiny", second, 3600, "traces", second + 1.0))
    assert 10 <= len(out.getvalue().splitlines()) <= 30


def test_a_terminal_gets_a_live_bar_and_the_same_start_and_end_lines():
    out = io.StringIO()
    with StageProgress("data", 2, out=out, live=True, interval=10.0) as stage:
        stage.start_line("data_job")
        stage.step_started("problem_index")
        stage.note(count_line("tiny-llama", 3, 10, "traces", 3.0), "problem_index")
        stage._bar.refresh()
        drawn = out.getvalue()
        stage.step_finished("problem_index")
        stage.finish(False, [])
    text = out.getvalue()
    assert "[data] running data_job: 2 steps" in text and "[data] FAILED in" in text
    assert "[data]" in drawn.replace("[data] running data_job: 2 steps", "") and "3/10" in drawn  # the bar names its stage


@dg.asset
def counted(context: dg.AssetExecutionContext) -> None:
    for done in (1, 2, 3):
        context.log.info(count_line("tiny", done, 3, "traces", 1.0))


@dg.asset
def broken(context: dg.AssetExecutionContext) -> None:
    raise FileNotFoundError("the study reads storage/x.parquet: materialise x first")


def _run(job_name: str, log_file, capfd):
    defs = run_output.with_cli_loggers(dg.Definitions(assets=[counted, broken], jobs=[
        dg.define_asset_job("ok_job", selection=[counted]), dg.define_asset_job("bad_job", selection=[broken])]))
    job = defs.resolve_job_def(job_name)
    out = io.StringIO()
    with dg.DagsterInstance.ephemeral() as instance, \
            StageProgress(job_name, len(job.graph.nodes), out=out, live=False, interval=0.5) as stage:
        result = job.execute_in_process(run_config=run_output.run_config(log_file, verbose=False),
                                        instance=instance, raise_on_error=False)
        seen = stage.last_count
    captured = capfd.readouterr()
    return result, seen, captured.out + captured.err


def test_dagster_events_go_to_the_log_file_and_progress_not_to_the_terminal(tmp_path, capfd):
    log_file = tmp_path / "logs" / "run.log"
    result, seen, terminal = _run("ok_job", log_file, capfd)
    assert result.success
    assert seen == (3, 3, "traces")  # the asset's own lines reached the display as counts
    assert "DEBUG" not in terminal and "STEP_START" not in terminal, terminal
    log = log_file.read_text()
    assert " - DEBUG - " in log and "STEP_START" in log and "tiny: 3/3 traces" in log


def test_verbose_streams_the_event_stream_again(tmp_path):
    config = run_output.run_config(tmp_path / "x.log", verbose=True)
    assert set(config["loggers"]) == {run_output.LOGGER_KEY, "console"}
    assert set(run_output.run_config(tmp_path / "x.log", verbose=False)["loggers"]) == {run_output.LOGGER_KEY}


def test_a_failed_step_prints_its_message_and_the_log_path_never_a_traceback(tmp_path, capfd):
    log_file = tmp_path / "logs" / "run.log"
    result, _, terminal = _run("bad_job", log_file, capfd)
    assert not result.success
    lines = _failure_lines(result, log_file)
    assert lines[0] == "step broken failed: FileNotFoundError: the study reads storage/x.parquet: materialise x first"
    assert lines[-1].startswith(f"full log: {log_file}")
    assert not any("Traceback" in line or 'File "' in line for line in lines)
    assert "Traceback" not in terminal
    assert "raise FileNotFoundError" in log_file.read_text()  # the whole stack is in the log


@pytest.fixture(autouse=True)
def _no_leftover_handlers():
    yield
    logging.getLogger(run_output.LOGGER_KEY).handlers.clear()


def test_every_study_has_a_row_in_the_closing_table_and_its_summary_asset_exists():
    """A study added without its headline would vanish from the closing table unseen."""
    import dagster as dg

    from ta_platform.cli.headlines import SUMMARY_ASSETS
    from ta_platform.definitions import STUDY_STAGES, defs

    assert set(SUMMARY_ASSETS) == set(STUDY_STAGES)
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert all(dg.AssetKey(asset) in keys for asset in SUMMARY_ASSETS.values())


def test_the_function_tag_headline_is_the_best_margin_over_its_stronger_baseline():
    import pandas as pd

    from ta_platform.defs.study_headlines import function_tags

    summary = pd.DataFrame([
        {"model_key": "m", "layer_key": "L2", "setting": "correct", "tag": "t", "probe_pr_auc": 0.9,
         "position_pr_auc": 0.4, "text_pr_auc": 0.7, "margin_position": 0.5, "ci_low_position": 0.4,
         "ci_high_position": 0.6, "margin_text": 0.2, "ci_low_text": 0.1, "ci_high_text": 0.3},
        {"model_key": "m", "layer_key": "L4", "setting": "correct", "tag": "t", "probe_pr_auc": 0.8,
         "position_pr_auc": 0.5, "text_pr_auc": 0.3, "margin_position": 0.3, "ci_low_position": 0.2,
         "ci_high_position": 0.35, "margin_text": 0.5, "ci_low_text": 0.45, "ci_high_text": 0.55}])
    meta = function_tags(summary)
    # L2's stronger baseline is text (+0.2), L4's is position (+0.3): the headline is L4 over position
    assert meta["headline_cell"].value == "m/L4/correct" and "(position)" in meta["headline"].value
    assert (meta["headline_value"].value, meta["headline_low"].value, meta["headline_high"].value) == (0.3, 0.2, 0.35)
    assert meta["m/L2/correct/margin_text"].value == 0.2 and meta["m/L4/correct/probe_pr_auc"].value == 0.8
