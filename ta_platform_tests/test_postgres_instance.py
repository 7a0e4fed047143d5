"""Dagster on PostgreSQL (config/dagster.postgres.yaml): four queued materialisations at once.

Against a real server (ta_platform_tests/postgres_server.py; skipped with the reason when none can
start), with a brand-new database: `dagster dev` (the webserver and a real `dagster-daemon run`)
creates the schema, four runs are submitted at the same moment through the GraphQL API and go
through the daemon's queued run coordinator (not execute_in_process), each in its own process.
Done when every run is in Postgres and succeeded (0 lost), no run or event mentions a lock error,
no SQLite file was created, and the tables the runs wrote are complete.
"""

from __future__ import annotations

import concurrent.futures
import time
import urllib.error

import pytest
from dagster import DagsterEventType

from ta_platform.rollouts.generator import generate_dataset
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import REPO, readme_dagster_dev
from ta_platform_tests.postgres_server import postgres_or_skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".venv/bin/activate").exists(),
                       reason="no .venv/bin/activate: run scripts/setup_env.sh first (the README's set-up)"),
]

POSTGRES_CONFIG = REPO / "config" / "dagster.postgres.yaml"
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId status } } ... on PythonError { message stack }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
RUNS = """{ runsOrError { __typename ... on Runs { results { runId status } } } }"""
LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
LOCK_ERRORS = ("could not set lock", "database is locked", "deadlock detected", "lock timeout")


def _launch_params() -> dict:
    return {"selector": {"repositoryLocationName": "ta_platform.definitions", "repositoryName": "__repository__",
                         "jobName": "data_job",
                         "assetSelection": [{"path": ["problem_index"]}, {"path": ["sentence_labels"]}]},
            # each run is one process (the daemon launches it); steps run inside it rather than in a
            # subprocess each, which would only add start-up time on a small CI machine
            "runConfigData": {"execution": {"config": {"in_process": {}}}}, "mode": "default"}


def test_postgres_config_loads_as_postgres_storage_and_the_queued_coordinator(monkeypatch, tmp_path):
    """Dagster reads the documented file as Postgres run, event-log and schedule storage behind the
    queued run coordinator, with the connection from TA_PG_* (no server needed to read it)."""
    from dagster._core.instance.ref import InstanceRef

    (tmp_path / "dagster.yaml").write_text(POSTGRES_CONFIG.read_text())
    ref = InstanceRef.from_dir(str(tmp_path))
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    db = ref.storage_data.config_dict["postgres_db"]
    assert {name: db[name] for name in ("hostname", "port", "username", "password", "db_name")} == {
        "hostname": {"env": "TA_PG_HOST"}, "port": {"env": "TA_PG_PORT"}, "username": {"env": "TA_PG_USER"},
        "password": {"env": "TA_PG_PASSWORD"}, "db_name": {"env": "TA_PG_DB"}}
    assert db["scheme"] == "postgresql+psycopg2"  # the driver installed (SQLAlchemy 2.1 defaults to psycopg 3)


def test_four_queued_runs_at_once_on_postgres_lose_nothing_and_hit_no_lock(tmp_path):
    import psycopg2

    with postgres_or_skip() as server:
        server.create_database("dagster")
        data = tmp_path / "data"
        generate_dataset(data, seed=0, n_problems=6)
        storage = tmp_path / "storage"
        home = storage / "dagster_home"
        home.mkdir(parents=True)
        # a regular file (not a link): the activate script then leaves the home's settings alone
        (home / "dagster.yaml").write_text(POSTGRES_CONFIG.read_text())
        with readme_dagster_dev(storage, TA_DATA_SOURCE=str(data), **server.env("dagster")) as dev:
            _wait_location_loaded(dev)
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda _: _launch(dev), range(4)))
            launched = [answer["launchRun"] for answer in answers]
            assert all(item["__typename"] == "LaunchRunSuccess" for item in launched), launched
            # submitted to the queue, not executed by the webserver: the daemon dequeues them
            assert {item["run"]["status"] for item in launched} <= {"QUEUED", "NOT_STARTED"}, launched
            run_ids = {item["run"]["runId"] for item in launched}
            statuses = _wait_terminal(dev, run_ids, limit_s=420)
            log = dev.log.read_text()
        assert statuses == dict.fromkeys(run_ids, "SUCCESS"), log[-4000:]
        con = psycopg2.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                               dbname="dagster")
        try:
            with con.cursor() as cursor:
                cursor.execute("SELECT run_id, status FROM runs")
                stored = dict(cursor.fetchall())
                cursor.execute("SELECT count(*) FROM event_logs WHERE " + " OR ".join(
                    ["event ILIKE %s"] * len(LOCK_ERRORS)), [f"%{text}%" for text in LOCK_ERRORS])
                lock_events = cursor.fetchone()[0]
                cursor.execute("SELECT count(DISTINCT run_id) FROM event_logs WHERE dagster_event_type = %s",
                               [DagsterEventType.RUN_ENQUEUED.value])
                enqueued = cursor.fetchone()[0]
                cursor.execute("SELECT daemon_type FROM daemon_heartbeats")
                daemons = {row[0] for row in cursor.fetchall()}
        finally:
            con.close()
    assert stored == dict.fromkeys(run_ids, "SUCCESS")  # 0 lost runs: all four recorded in Postgres
    # every run went through the queued run coordinator, whose daemon (heartbeating into Postgres)
    # is the only thing that launches a queued run: the webserver only enqueues
    assert enqueued == 4
    assert "QUEUED_RUN_COORDINATOR" in daemons, daemons
    assert lock_events == 0
    assert not any(text in log.lower() for text in LOCK_ERRORS), log[-4000:]
    assert not list(home.rglob("*.db")), "SQLite storage was created next to the Postgres instance"
    index = MetadataStore(storage / "metadata.duckdb").read_table("problem_index")
    labels = MetadataStore(storage / "metadata.duckdb").read_table("sentence_labels")
    assert len(index) == 24 and index["trace_key"].is_unique  # 6 problems x 2 models x 2 splits
    assert len(labels) == int(index["n_sentences"].sum())


def _wait_location_loaded(dev, limit_s: float = 180.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        entries = dev.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
        if entries and all(e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                           for e in entries):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"code location not loaded: {entries}\n{dev.log.read_text()[-4000:]}")
        time.sleep(1)


def _launch(dev) -> dict:
    try:
        return dev.graphql(LAUNCH, {"params": _launch_params()})
    except urllib.error.HTTPError as error:
        raise AssertionError(f"launchRun: {error}: {error.read().decode(errors='replace')[-3000:]}\n"
                             f"{dev.log.read_text()[-4000:]}") from None


def _wait_terminal(dev, run_ids: set[str], limit_s: float) -> dict[str, str]:
    deadline = time.monotonic() + limit_s
    while True:
        results = dev.graphql(RUNS)["runsOrError"]["results"]
        statuses = {row["runId"]: row["status"] for row in results if row["runId"] in run_ids}
        if len(statuses) == len(run_ids) and set(statuses.values()) <= TERMINAL:
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not finished after {limit_s:.0f}s: {statuses}\n{dev.log.read_text()[-4000:]}")
        time.sleep(2)
