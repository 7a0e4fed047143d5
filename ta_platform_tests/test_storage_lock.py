"""The storage writer lock: a second holder waits and names the first; a killed holder frees it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from ta_platform.common.storage_lock import hold_storage, lock_path

pytestmark = pytest.mark.fault

HOLDER = textwrap.dedent("""
    import sys, time
    from ta_platform.common.storage_lock import hold_storage
    with hold_storage(sys.argv[1], what="holder-under-test"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        open(sys.argv[1] + "/releasing", "w").close()  # the last thing done while holding
""")


def _start_holder(storage: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(storage), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_waits_and_names_the_first(tmp_path):
    holder = _start_holder(tmp_path, 3.0)
    lines: list[str] = []
    with hold_storage(tmp_path, what="second", log=lines.append, poll_s=0.1, notice_s=60):
        assert (tmp_path / "releasing").exists(), "the lock was granted while the first holder still held it"
    holder.wait()
    assert any("holder-under-test" in line and f"pid {holder.pid}" in line for line in lines), lines
    assert any("acquired after" in line for line in lines), lines


def test_a_killed_holder_never_leaves_a_stale_lock(tmp_path):
    holder = _start_holder(tmp_path, 600.0)
    with pytest.raises(TimeoutError, match="holder-under-test"):
        with hold_storage(tmp_path, what="second", log=lambda line: None, poll_s=0.05, timeout_s=0.5):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with hold_storage(tmp_path, what="after the kill", log=lambda line: None, timeout_s=5.0):
        assert lock_path(tmp_path).exists()


def test_reentrant_within_a_process_exclusive_to_other_processes_and_released_after(tmp_path):
    with hold_storage(tmp_path, what="outer", log=lambda line: None, timeout_s=1.0):
        with hold_storage(tmp_path, what="inner (same process)", log=lambda line: None, timeout_s=1.0):
            pass
        # another process cannot take it while the outer block holds it
        probe = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import sys
            from ta_platform.common.storage_lock import hold_storage
            try:
                with hold_storage(sys.argv[1], what="probe", log=lambda l: None, timeout_s=0.5):
                    print("granted")
            except TimeoutError as error:
                print("refused:", error)
        """), str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert probe.stdout.startswith("refused:") and "outer" in probe.stdout, probe.stdout + probe.stderr
    released = threading.Event()

    def take():
        with hold_storage(tmp_path, what="after release", log=lambda line: None, timeout_s=5.0):
            released.set()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(10)
    assert released.is_set()
