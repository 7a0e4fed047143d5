"""One writer of a storage at a time: a whole ``ta-platform materialize`` command holds its storage.

Why: two commands on one storage used to interleave their stages. The second re-materialised
``needle_probes`` while the first was evaluating its gate, so the first saw the probe checks as
"planned" (missing), printed a false red and stamped the reports NOT RELEASED; which verdict the
reports showed depended on which command finished last. With this lock the second command waits,
says who holds the storage, and then runs on the finished outputs (everything cached is reused),
so both complete and both gates read a consistent storage.

How: ``fcntl.flock`` on ``<storage>/locks/writer.lock``. The kernel drops the lock when its holder
dies (SIGKILL, OOM), so a killed run can never leave a stale lock behind; the holder's identity
(pid, host, start time, what it runs) sits in a JSON file beside it only to name it in messages.
The lock is re-entrant within a process, so code that takes it inside a command that already holds
it (an asset body run in-process) does not deadlock on itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_DIR = "locks"
LOCK_FILE = "writer.lock"
HOLDER_FILE = "writer.holder.json"

_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth) held by this process


def lock_path(storage: str | os.PathLike[str]) -> Path:
    return Path(storage) / LOCK_DIR / LOCK_FILE


def describe_holder(storage: str | os.PathLike[str]) -> str:
    """Who holds (or last held) the storage, from the holder file; ``unknown`` when unreadable."""
    try:
        holder = json.loads((Path(storage) / LOCK_DIR / HOLDER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "an unknown process"
    return (f"{holder.get('what', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('started', '?')})")


@contextlib.contextmanager
def hold_storage(storage: str | os.PathLike[str], *, what: str, log: Callable[[str], None] = print,
                 poll_s: float = 0.5, notice_s: float = 60.0, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the storage's writer lock for the block; wait (naming the holder) while another has it.

    ``log`` gets one line when the wait starts and one every ``notice_s`` seconds after; with
    ``timeout_s`` a wait that long raises ``TimeoutError`` naming the holder.
    """
    path = lock_path(storage)
    key = str(path.resolve()) if path.exists() else str(path.absolute())
    if key in _held:  # re-entrant: this process already holds the storage
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, storage, what=what, log=log, poll_s=poll_s, notice_s=notice_s, timeout_s=timeout_s)
        _write_holder(storage, what)
        _held[key] = (fd, 1)
        try:
            yield
        finally:
            del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, storage, *, what: str, log, poll_s: float, notice_s: float, timeout_s: float | None) -> None:
    started = time.monotonic()
    next_notice = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if next_notice:
                log(f"[lock] {storage}: acquired after {time.monotonic() - started:.0f}s; running {what}")
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        waited = time.monotonic() - started
        if timeout_s is not None and waited >= timeout_s:
            raise TimeoutError(f"{storage} is held by {describe_holder(storage)}; gave up after {waited:.0f}s")
        if waited >= next_notice:
            log(f"[lock] {storage} is in use by {describe_holder(storage)}; {what} waits for it "
                f"({waited:.0f}s so far)")
            next_notice = max(next_notice, waited) + notice_s if next_notice else notice_s
        time.sleep(poll_s)


def _write_holder(storage, what: str) -> None:
    """Name the holder (best effort: the lock itself, not this file, is what excludes)."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    target = Path(storage) / LOCK_DIR / HOLDER_FILE
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(holder), encoding="utf-8")
    os.replace(tmp, target)
