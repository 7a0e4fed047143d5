"""Who is running a job, recorded so that a later process can tell whether that runner is gone.

Why: ``ta-platform materialize`` executes each stage in its own process (``execute_in_process``).
When that process is killed (``kill -9``, the OOM killer, a closed laptop) nothing tells the Dagster
instance: the run stays STARTED and keeps its pool slots forever. A run tagged with its runner's
identity (pid, host, and the process start time, so a recycled pid is not mistaken for the runner)
can be judged dead by the next command on the same host. Standard library only (Linux ``/proc`` for
the start time; elsewhere only the pid is compared).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PID_TAG = "ta_platform/runner_pid"
HOST_TAG = "ta_platform/runner_host"
STARTED_TAG = "ta_platform/runner_started"

ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) from /proc, or None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and parens
    return fields[0], fields[19]  # state is field 3 and starttime field 22 of proc(5)


def start_token(pid: int) -> str:
    """An identifier of the process ``pid`` that changes when the pid is reused ("" if unknown)."""
    stat = _proc_stat(pid)
    return f"{_boot_id()}:{stat[1]}" if stat else ""


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as recorded in a run's tags: ``pid`` on ``host``, started at ``started``."""

    pid: int
    host: str
    started: str = ""

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The identity of a process on this host (read while it is alive)."""
        return cls(pid=pid, host=socket.gethostname(), started=start_token(pid))

    def as_tags(self) -> dict[str, str]:
        return {PID_TAG: str(self.pid), HOST_TAG: self.host, STARTED_TAG: self.started}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ProcessIdentity | None:
        """The identity a run was tagged with; None for runs launched elsewhere (UI, daemon, CLI)."""
        pid = tags.get(PID_TAG, "")
        if not pid.isdigit() or not tags.get(HOST_TAG):
            return None
        return cls(pid=int(pid), host=tags[HOST_TAG], started=tags.get(STARTED_TAG, ""))

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"

    def state(self) -> tuple[str, str]:
        """(ALIVE | DEAD | UNKNOWN, why). Only a process on this host can be judged."""
        if self.host != socket.gethostname():
            return UNKNOWN, f"{self.describe()} is on another host (this is {socket.gethostname()})"
        if not _pid_exists(self.pid):
            return DEAD, f"{self.describe()} is gone"
        stat = _proc_stat(self.pid)
        if stat and stat[0] in ("Z", "X"):
            return DEAD, f"{self.describe()} has exited (state {stat[0]})"
        if self.started and stat and start_token(self.pid) != self.started:
            return DEAD, f"{self.describe()} is gone (the pid now belongs to a newer process)"
        return ALIVE, f"{self.describe()} is alive"
