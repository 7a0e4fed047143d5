"""A full disk during extraction and during the metadata write: a clear "no space" error naming the
path, nothing written before lost or changed, no temporary file left, and after space is freed the
rerun finishes with the gate passing and outputs identical to an uninterrupted run.

The storage lives on a size-limited tmpfs the test mounts (and unmounts); the disk is filled by a
ballast file leaving a few kilobytes, exactly as another process filling a shared disk would. The
Dagster instance stays on the ordinary disk (DAGSTER_HOME apart from TA_STORAGE), as on a lab
machine whose data volume fills while the home directory does not. Skipped, with the reason, where
the test cannot mount a tmpfs (not root, or no mount namespace rights).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from ta_platform.common.instance import prepare_dagster_home
from ta_platform_tests.e2e import (
    ONE_TINY_MODEL_REGISTRY,
    assert_same_outputs,
    project_env,
    run_cli,
    storage_outputs,
)

pytestmark = [pytest.mark.fault, pytest.mark.outputs_compared]

ANCHORS = ["ta-platform", "materialize", "--study", "anchors", "--seeds", "0...0"]
BALLAST = "ballast.bin"


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "256m"):
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip() or mounted.stdout.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path, leave_bytes: int) -> Path:
    """Write a ballast file until only ``leave_bytes`` remain free on ``where``'s filesystem."""
    ballast = where / BALLAST
    free = shutil.disk_usage(where).free
    with open(ballast, "wb") as handle:
        remaining = max(free - leave_bytes, 0)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            written = handle.write(chunk[: min(len(chunk), remaining)])
            remaining -= written
    return ballast


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != BALLAST and not {"logs", "locks"} & set(p.relative_to(root).parts)}


def temporary_files(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.endswith((".tmp", ".partial"))]


def env_for(storage: Path, home: Path, registry: Path) -> dict[str, str]:
    env = project_env(storage, TA_DATA_SOURCE="embedded", TA_MODEL_REGISTRY=str(registry))
    shutil.rmtree(storage / "dagster_home", ignore_errors=True)  # the instance lives on the ordinary disk
    env["DAGSTER_HOME"] = str(prepare_dagster_home(home))
    return env


def assert_no_space_error(result: subprocess.CompletedProcess, storage: Path) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-4000:]
    assert "no space left on device while writing" in text and str(storage) in text, text[-6000:]
    assert "Traceback" not in result.stdout, result.stdout[-4000:]


def fill_during(small: Path, storage: Path, env: dict[str, str], stage: str, *, leave_bytes: int) -> None:
    """Fill the disk, run ``stage``: a named "no space" failure, earlier files intact, no temp file; then free it."""
    before = file_hashes(storage)
    ballast = fill(small, leave_bytes=leave_bytes)
    assert_no_space_error(run_cli([*ANCHORS, "--stage", stage], env), storage)
    after = file_hashes(storage)
    assert {k: after.get(k) for k in before} == before, "an output written before the full disk changed"
    assert temporary_files(storage) == []
    ballast.unlink()


@pytest.mark.slow
@pytest.mark.release  # three runs of the anchors study (~5-10 min): the release battery
def test_disk_full_in_extraction_and_in_the_metadata_write_loses_nothing_and_the_rerun_matches(tmp_path):
    registry = tmp_path / "models.toml"
    registry.write_text(ONE_TINY_MODEL_REGISTRY)

    reference_storage = tmp_path / "reference"
    reference = run_cli(ANCHORS, env_for(reference_storage, tmp_path / "reference_home", registry))
    assert reference.returncode == 0, reference.stdout[-4000:] + reference.stderr[-4000:]

    with small_filesystem(tmp_path / "small") as small:
        storage = small / "storage"
        env = env_for(storage, tmp_path / "home", registry)
        data = run_cli([*ANCHORS, "--stage", "data"], env)
        assert data.returncode == 0, data.stdout[-4000:] + data.stderr[-4000:]

        # 1. the disk fills during extraction
        fill_during(small, storage, env, "activations", leave_bytes=64 * 1024)
        # 2. the disk fills while the data stage rewrites the metadata tables
        assert run_cli([*ANCHORS, "--stage", "activations"], env).returncode == 0
        fill_during(small, storage, env, "data", leave_bytes=4 * 1024)

        # 3. space freed: the whole study completes, its gate passes, outputs equal the uninterrupted run's
        rerun = run_cli(ANCHORS, env)
        assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
        assert_same_outputs(storage_outputs(storage), storage_outputs(reference_storage), "after the full disks")
