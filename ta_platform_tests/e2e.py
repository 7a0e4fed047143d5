"""Helpers for end-to-end tests: a project storage in a temporary folder and the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ta_platform.common.instance import prepare_dagster_home

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def project_env(storage: Path, **extra: str) -> dict[str, str]:
    """The environment the README's set-up gives, pointed at ``storage``."""
    prepare_dagster_home(storage / "dagster_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TA_", "DAGSTER_"))}
    env.update({
        "TA_STORAGE": str(storage),
        "DAGSTER_HOME": str(storage / "dagster_home"),
        "DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME": "ta_platform.definitions",
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    })
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


class DagsterDev:
    """`dagster dev` started as the README says; ``graphql`` queries its API."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path, env: dict[str, str]):
        self.process, self.port, self.log, self.env = process, port, log, env
        self.url = f"http://127.0.0.1:{port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_serving(self, limit_s: float = 300.0) -> None:
        """Poll the GraphQL API until it answers; fail at once if the process exits (a hang guard, not a timing)."""
        deadline = time.monotonic() + limit_s
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited ({self.process.returncode}):\n{self.log.read_text()[-4000:]}")
            try:
                self.graphql("{ version }")
                return
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no GraphQL API on {self.url}:\n{self.log.read_text()[-4000:]}") from None
                time.sleep(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def readme_dagster_dev(storage: Path, **extra: str) -> Iterator[DagsterDev]:
    """Run `source .venv/bin/activate && dagster dev` from the repository root, with TA_STORAGE=storage.

    TA_STORAGE is exported before sourcing: the activate script derives DAGSTER_HOME from it, so the
    test keeps the README's steps without touching the repository's storage/. The process group is
    stopped by its id on exit, even on failure: SIGTERM, then SIGKILL for whatever is left.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TA_", "DAGSTER_")) and k not in ("PYTHONWARNINGS", "VIRTUAL_ENV")}
    env.update({"TA_STORAGE": str(storage), **extra})
    port = free_port()
    log = storage / "dagster_dev.log"
    storage.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"source .venv/bin/activate && exec dagster dev -p {port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_default_sigint)
    try:
        server = DagsterDev(process, port, log, env)
        server.wait_until_serving()
        yield server
    finally:
        stop_process_group(process)


def _default_sigint() -> None:
    """Undo an inherited "ignore SIGINT" (pytest started in the background with `&`): `dagster dev`
    maps SIGTERM onto its SIGINT handler, so it would ignore SIGTERM too and only SIGKILL would stop it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process_group(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the group led by ``process`` (its id is the group id), then SIGKILL what remains."""
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_members(process.pid) and time.monotonic() < deadline:
        process.poll()  # reap the leader, so that it does not count as a member
        time.sleep(0.2)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of group ``pgid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


# tiny-qwen2 as in ta_platform/extraction/models.toml, one layer: the smallest registry that runs the
# whole graph (and claims the gpu pool); for TA_MODEL_REGISTRY in tests that run the CLI.
ONE_TINY_MODEL_REGISTRY = """
[models.tiny-qwen2]
source = "tiny"
arch = "qwen2"
revision = "tiny-v1"
num_layers = 8
layers = [0.5]
dtype = "auto"
trace_models = ["deepseek-r1-distill-qwen-14b"]
"""


VOLATILE_COLUMNS = {"fit_seconds"}  # timings: the only declared columns that differ between identical runs


def storage_outputs(storage: Path) -> dict[str, object]:
    """What a rerun must reproduce exactly: every declared metadata table (sorted, timings dropped), every
    activation partition's rows and index, and the probes' predictions, read through the platform's readers."""
    import numpy as np
    import pandas as pd

    from ta_platform.extraction.store import load_partition
    from ta_platform.store.metadata_store import MetadataStore
    from ta_platform.store.tables import TABLES

    store = MetadataStore(storage / "metadata.duckdb")
    existing = set(store.query("SELECT table_name FROM information_schema.tables")["table_name"])
    found: dict[str, object] = {}
    for name in sorted(set(TABLES) & existing):
        frame = store.read_table(name).drop(columns=list(VOLATILE_COLUMNS), errors="ignore")
        keys = [c for c in frame.columns if frame[c].dtype == object or frame[c].dtype.kind in "iub"]
        found[f"table:{name}"] = frame.sort_values(keys or list(frame.columns)).reset_index(drop=True)
    for manifest in sorted((storage / "activations").glob("*/*/manifest.json")):
        partition = load_partition(manifest.parent)
        where = manifest.parent.relative_to(storage)
        found[f"rows:{where}"] = np.asarray(partition.embeddings)
        found[f"index:{where}"] = partition.index
    for path in sorted((storage / "probes").glob("seed_*/predictions.parquet")):
        found[str(path.relative_to(storage))] = pd.read_parquet(path)
    return found


def assert_same_outputs(actual: dict[str, object], expected: dict[str, object], context: str) -> None:
    """Every output of ``expected`` present in ``actual`` and exactly equal (frames and arrays)."""
    import numpy as np
    import pandas as pd

    assert actual.keys() == expected.keys(), sorted(set(actual) ^ set(expected))
    for name, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(actual[name], value, check_exact=True, obj=f"{name} {context}")
        else:
            np.testing.assert_array_equal(actual[name], value, err_msg=f"{name} {context}")


def step_in_progress(instance, job_name: str) -> str | None:
    """A STARTED run of ``job_name`` that has begun a step (killed there, it dies mid-step, not at its start)."""
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.STARTED]))
    for record in records:
        if instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START):
            return record.dagster_run.run_id
    return None
