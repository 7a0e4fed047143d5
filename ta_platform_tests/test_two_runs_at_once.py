"""Two runs on one storage at once: both complete, the second waits naming the holder, the gate passes.

What used to happen: two `ta-platform materialize --study needle` started two seconds apart both ran
every stage; the second re-materialised `needle_probes` while the first read its gate, so the first
saw the probe checks as planned (missing), printed a false red and stamped the reports NOT RELEASED.

Now (1) a command holds the storage's writer lock (``common/storage_lock.py``): the second waits,
names the first, then runs on the finished outputs; (2) the final gate waits for a run launched
elsewhere (the UI, `dagster asset materialize`) that is still evaluating gated checks, naming it,
instead of reading its planned checks as missing. Both on the SQLite instance and on the Postgres
instance config (a real server on loopback; skipped with the reason when none can start).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from ta_platform_tests.e2e import REPO, project_env, run_cli
from ta_platform_tests.postgres_server import postgres_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.fault, pytest.mark.outputs_compared]

STUDY = ["ta-platform", "materialize", "--study", "needle"]
ENV = {"TA_DATA_SOURCE": "embedded", "TA_MODEL_PROFILE": "tiny"}
POSTGRES_CONFIG = REPO / "config" / "dagster.postgres.yaml"


@contextlib.contextmanager
def instance_config(kind: str, storage: Path):
    """The environment of a project on ``storage`` whose Dagster instance is SQLite or Postgres."""
    env = project_env(storage, **ENV)
    if kind == "sqlite":
        yield env
        return
    with postgres_or_skip() as server:
        server.create_database("dagster")
        home = Path(env["DAGSTER_HOME"])
        (home / "dagster.yaml").unlink()
        (home / "dagster.yaml").write_text(POSTGRES_CONFIG.read_text())
        yield {**env, **server.env("dagster")}


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _step_started(instance: dg.DagsterInstance, run_id_filter: set[str]) -> str | None:
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run_id = record.dagster_run.run_id
        if run_id not in run_id_filter and instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
            return run_id
    return None


# both release tier (CI budget: ~6 min each); CI keeps test_storage_lock.py (the waiter names the holder,
# a killed holder frees the lock)
@pytest.mark.parametrize("kind", [pytest.param("sqlite", marks=pytest.mark.release),
                                  pytest.param("postgres", marks=pytest.mark.release)])
def test_two_commands_and_a_ui_style_run_on_one_storage_complete_and_the_gate_passes(kind, tmp_path):
    storage = tmp_path / "storage"
    with instance_config(kind, storage) as env:
        assert run_cli(["dagster", "instance", "info"], env).returncode == 0  # initialise the instance once

        # 1. two commands started together: one waits for the other, naming it; both pass the gate
        first = _start(STUDY, env)
        time.sleep(2)
        second = _start(STUDY, env)
        outputs = [proc.communicate(timeout=3600)[0] for proc in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], "\n=====\n".join(o[-4000:] for o in outputs)
        waited = [o for o in outputs if "[lock]" in o and "is in use by ta-platform materialize --study needle" in o]
        assert len(waited) == 1, outputs[1][-3000:]
        assert f"pid {first.pid}" in waited[0], waited[0][-3000:]
        assert all("gate passes" in o for o in outputs), [o[-1500:] for o in outputs]
        assert not any("NOT RELEASED" in o for o in outputs)

        # 2. a run launched elsewhere (as the UI does) re-materialises needle_probes while the command
        #    reads its gate: the gate waits for it, names it, and passes (no planned check read as missing)
        elsewhere = _start(["dagster", "asset", "materialize", "--select", "needle_probes",
                            "--partition-range", "0...2"], env)
        with dg.DagsterInstance.from_config(str(storage / "dagster_home")) if kind == "sqlite" else \
                contextlib.nullcontext(None) as instance:
            if instance is not None:
                deadline = time.monotonic() + 600
                while not _step_started(instance, set()) and time.monotonic() < deadline:
                    assert elsewhere.poll() is None, elsewhere.communicate()[0][-3000:]
                    time.sleep(0.2)
        gate = run_cli([*STUDY, "--stage", "gate"], env, timeout=1800)
        other = elsewhere.communicate(timeout=1800)[0]
        assert elsewhere.returncode == 0, other[-3000:]
        assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
        assert "gate passes" in gate.stdout, gate.stdout[-3000:]
        if kind == "sqlite":  # the instance was polled until the other run's step had started
            assert "[gate] waiting for run" in gate.stdout, gate.stdout[-3000:]

        final = run_cli(["ta-platform", "gate", "--study", "needle"], env)
        assert final.returncode == 0, final.stdout[-3000:]
    from ta_platform.store.metadata_store import MetadataStore

    metrics = MetadataStore(storage / "metadata.duckdb").read_table("needle_probe_metrics")
    assert len(metrics) and not metrics.duplicated().any()
