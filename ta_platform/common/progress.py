"""What a long command shows on the terminal: per stage one start line, live progress, one end line.

Why a module of its own, with no Dagster import: the studies report progress through plain
``log(line)`` callbacks, and the orchestrator's event stream is far too fine for a person (one
``STEP_OUTPUT`` per asset). ``ta-platform materialize`` opens a ``StageProgress`` per stage and
feeds it the step starts and ends and the platform's own lines; this module decides what reaches
the terminal. On a terminal (a TTY) it draws a ``rich`` progress bar (steps or the latest
"done/total unit" count, rate, ETA) that disappears when the stage ends; otherwise (a file, a CI
log) it prints a plain line every ``interval`` seconds, spaced out to a third of the stage's age
once that is longer, so a long run stays a short log.

Counts: a line of the form ``"<what>: 17/48 traces (3.4 traces/s)"`` (``count_line``; the rate in
parentheses is part of the form, so "5/5 pass" is not a count) is read as progress of the current
step; other lines are shown as the latest news and never parsed further.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

INTERVAL_ENV = "TA_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
_COUNT = re.compile(r"(?<![\w.])(\d+)/(\d+) ([A-Za-z][\w-]*) \([\d.]+ \3/s\)")

_current: StageProgress | None = None


def count_line(what: str, done: int, total: int, unit: str, elapsed: float) -> str:
    """The progress line the display reads as a count: ``"<what>: 17/48 traces (3.4 traces/s)"``."""
    return f"{what}: {done}/{total} {unit} ({done / max(elapsed, 1e-9):.1f} {unit}/s)"


def parse_count(line: str) -> tuple[int, int, str] | None:
    """(done, total, unit) of the first ``done/total unit (rate unit/s)`` in ``line`` with done <= total."""
    for match in _COUNT.finditer(line):
        done, total = int(match.group(1)), int(match.group(2))
        if 0 <= done <= total and total > 0:
            return done, total, match.group(3)
    return None


def duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"1h02m"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def interval_seconds() -> float:
    """Seconds between plain progress lines (``TA_PROGRESS_SECONDS``, default 30)."""
    try:
        return max(0.5, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def current() -> StageProgress | None:
    """The stage now open in this process (None between stages): where a log callback reports."""
    return _current


def say(line: str) -> None:
    """Print one line now (above the live bar when one is drawn): for what must not wait for a tick."""
    if _current is not None:
        _current._print(line)
    else:
        print(line, flush=True)


def note(line: str, step: str | None = None) -> None:
    """Report a platform line to the open stage; printed as is when no stage is open."""
    if _current is not None:
        _current.note(line, step)
    else:
        print(line, flush=True)


class StageProgress:
    """One stage's display. Use as a context manager; ``finish`` prints the end line."""

    def __init__(self, name: str, n_steps: int, *, out: TextIO | None = None, live: bool | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.name, self.n_steps = name, max(0, n_steps)
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.interval = interval_seconds() if interval is None else interval
        self.clock = clock
        self.started = self.clock()
        self.steps_done = 0
        self.step: str | None = None
        self.step_began = self.started
        self.latest = ""
        self.count: tuple[int, int, str] | None = None  # the current step's, reset when a step ends
        self.last_count: tuple[int, int, str] | None = None
        self.count_at = self.started
        self.count_base = 0  # the count's value when its rate clock started
        self._last_print = self.started
        self._bar = None
        self._task = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> StageProgress:
        global _current
        _current = self
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self.out, force_terminal=True)  # live: a terminal, or asked for
            # narrow columns first, the news last: a narrow terminal crops the news, not the counts
            self._bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(bar_width=20), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                 TextColumn("{task.fields[news]}", markup=False), console=console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"[{self.name}]", total=self.n_steps or None, rate="", eta="", news="")
        elif self.interval > 0:  # a silent step still shows it is alive, once per interval
            self._ticker = threading.Thread(target=self._tick, name=f"progress-{self.name}", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._refresh(self.latest or "working")

    def __exit__(self, *exc) -> None:
        global _current
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if _current is self:
            _current = None

    def start_line(self, job: str, detail: str = "") -> None:
        """``[stage] running <job>: N steps; <detail>`` (the form scripts and tests wait for)."""
        steps = f"{self.n_steps} step{'s' if self.n_steps != 1 else ''}"
        self._print(f"[{self.name}] running {job}: {steps}{'; ' + detail if detail else ''}")

    def finish(self, ok: bool, failed_checks: list[str], run_id: str = "") -> None:
        """The stage's one end line, ``[stage] run <id> succeeded in 12.5s; failed checks: none``: the
        form ``ta-platform bench scale`` and the tests read (seconds, so a script can add them up)."""
        checks = ", ".join(failed_checks) if failed_checks else "none"
        run = f" run {run_id}" if run_id else ""
        self._print(f"[{self.name}]{run} {'succeeded' if ok else 'FAILED'} in {self.clock() - self.started:.1f}s; "
                    f"failed checks: {checks}")

    # -- events ----------------------------------------------------------------------------------
    def step_started(self, step: str) -> None:
        self.step, self.step_began, self.count, self.count_base = step, self.clock(), None, 0
        self._refresh(news=f"{step} started")

    def step_finished(self, step: str, ok: bool = True) -> None:
        self.steps_done = min(self.steps_done + 1, self.n_steps or self.steps_done + 1)
        self.count = None
        self._refresh(news=f"{step} {'done' if ok else 'FAILED'}")

    def note(self, line: str, step: str | None = None) -> None:
        """A platform line (a study's ``log(...)``): the latest news, and a count if it carries one."""
        line = " ".join(line.split())  # multi-line tables become one line of news; the log file keeps them whole
        if step and step != self.step:
            self.step, self.step_began, self.count, self.count_base = step, self.clock(), None, 0
        found = parse_count(line)
        if found is not None and self.count is not None and (found[0] < self.count[0] or found[1:] != self.count[1:]):
            # a new count within the step (the next model): its own rate, counted from the previous
            # count's last report (when this one began, give or take a model load)
            self.step_began, self.count_base = self.count_at, 0
        if found is not None:
            self.count_at = self.clock()  # rates are measured up to the latest count, not to a later tick
        self.count = found or self.count
        self.last_count = self.count or self.last_count
        self._refresh(news=f"{step + ': ' if step else ''}{line}")

    # -- rendering -------------------------------------------------------------------------------
    def status(self) -> tuple[str, str, str]:
        """(counts, rate, eta) as shown: the current step's count when known, else the stage's steps."""
        now = self.clock()
        if self.count is not None:
            done, total, unit = self.count
            spent = self.count_at - self.step_began
            rate = (done - self.count_base) / spent if spent > 0 else 0.0
            eta = max(0.0, (total - done) / rate - (now - self.count_at)) if rate > 0 else None
            counts = f"{done}/{total} {unit}"
            rate_text = f"{rate:.1f} {unit}/s"
        else:
            spent = now - self.started
            done, total = self.steps_done, self.n_steps
            counts = f"{done}/{total} steps"
            rate = done / spent if spent > 0 else 0.0
            rate_text = f"{rate * 60:.1f} steps/min"
            eta = (total - done) / rate if rate > 0 and total else None
        return counts, rate_text, f"ETA {duration(eta)}" if eta is not None else "ETA ?"

    def _refresh(self, news: str) -> None:
        with self._lock:
            self._refresh_locked(news)

    def _refresh_locked(self, news: str) -> None:
        self.latest = news
        counts, rate, eta = self.status()
        if self._bar is not None:
            completed, total = (self.count[0], self.count[1]) if self.count else (self.steps_done, self.n_steps or None)
            self._bar.update(self._task, completed=completed, total=total, rate=rate, eta=eta, news=news[:80])
            return
        now = self.clock()
        # every interval, then more rarely as the stage goes on (a third of its age): an hours-long
        # stage writes tens of lines, not thousands
        if now - self._last_print >= max(self.interval, (now - self.started) / 3):
            self._last_print = now
            self._print(f"[{self.name}] {counts}, {rate}, {eta}, {duration(now - self.started)} so far: {news[:140]}")

    def _print(self, line: str) -> None:
        with self._lock:
            self._print_locked(line)

    def _print_locked(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.out, flush=True)
