"""Where a CLI run's Dagster events go: the instance (the UI), a log file, and the progress display.

Why not Dagster's console logger: it prints every event (``STEP_START``, ``STEP_OUTPUT``, ``Yielded
output "result"``), burying the platform's own lines; a main job printed ~1,000 lines. Each run of
``ta-platform materialize`` instead names one logger in its run config, ``ta_terminal``: it writes
every event, DEBUG included, to ``<storage>/logs/materialize-<time>.log`` and hands step starts and
ends and the platform's own INFO lines to ``ta_platform.common.progress``. The instance still stores
the whole event stream (the UI's run page); ``--verbose`` adds the console logger back.

The loggers are added to a copy of the code location (``Definitions.merge``) used by the CLI only:
runs launched from the UI keep Dagster's default loggers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dagster as dg

from ta_platform.common import progress
from ta_platform.common.paths import storage_path

LOGGER_KEY = "ta_terminal"
_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


class _ProgressHandler(logging.Handler):
    """Step starts and ends and the platform's INFO lines -> the open ``StageProgress``."""

    def emit(self, record: logging.LogRecord) -> None:
        stage = progress.current()
        if stage is None:
            return
        meta = getattr(record, "dagster_meta", None) or {}  # set by Dagster's log manager on every record
        event, step = meta.get("dagster_event"), meta.get("step_key")
        if event is not None:
            kind = event.event_type_value
            if kind == "STEP_START":
                stage.step_started(step or "step")
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                stage.step_finished(step or "step", ok=kind == "STEP_SUCCESS")
        elif record.levelno >= logging.INFO:
            stage.note(str(meta.get("orig_message", record.getMessage())), step)


@dg.logger(config_schema={"log_file": dg.Field(str, description="the file that receives every event")},
           description="ta-platform's CLI logger: every event to a file, progress to the terminal.")
def terminal_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    path = Path(init_context.logger_config["log_file"])
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.Logger(LOGGER_KEY, level=logging.DEBUG)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(file_handler)
    logger.addHandler(_ProgressHandler())
    return logger


def with_cli_loggers(defs: dg.Definitions) -> dg.Definitions:
    """The code location with the CLI's logger beside Dagster's console logger (for ``--verbose``)."""
    return dg.Definitions.merge(defs, dg.Definitions(loggers={"console": dg.colored_console_logger,
                                                             LOGGER_KEY: terminal_logger}))


def new_log_file() -> Path:
    """``<storage>/logs/materialize-<UTC time>.log`` for this invocation's runs (all stages append)."""
    return storage_path("logs", f"materialize-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.log")


def run_config(log_file: Path, verbose: bool) -> dict:
    """Run config naming the loggers: only the ones listed are created (no console unless verbose)."""
    loggers: dict = {LOGGER_KEY: {"config": {"log_file": str(log_file)}}}
    if verbose:
        loggers["console"] = {"config": {"log_level": "DEBUG"}}
    return {"loggers": loggers}


def quiet_libraries() -> None:
    """No Hugging Face progress bars ("Loading weights ... 100%"), nor the bare tqdm bar transformers
    draws while it converts a GGUF file on first use: the stage's display shows progress."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
