"""Four Dagster runs materialising at once into one project: no DuckDB lock error, no lost rows."""

from __future__ import annotations

import subprocess

import pytest

from ta_platform.rollouts.generator import generate_dataset
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import REPO, project_env, run_cli

# release tier (CI budget, ~3 min): CI keeps four queued runs on Postgres (test_postgres_instance.py) and
# the writer-process race of test_metadata_store_parquet.py
pytestmark = [pytest.mark.slow, pytest.mark.fault, pytest.mark.release]


def test_four_parallel_runs_succeed_and_leave_complete_tables(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, seed=0, n_problems=6)
    storage = tmp_path / "storage"
    env = project_env(storage, TA_DATA_SOURCE=str(data))
    # the set-up initialises the instance once (SQLite schema creation itself is not concurrent-safe)
    assert run_cli(["dagster", "instance", "info"], env).returncode == 0
    command = ["dagster", "asset", "materialize", "--select", "problem_index,sentence_labels"]
    procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(o[-2000:] for o in outputs)
    assert not any("Could not set lock" in o for o in outputs)
    store = MetadataStore(storage / "metadata.duckdb")
    index = store.read_table("problem_index")
    labels = store.read_table("sentence_labels")
    assert len(index) == 24 and index["trace_key"].is_unique  # 6 problems x 2 models x 2 splits
    assert len(labels) == int(index["n_sentences"].sum())
    assert not labels.duplicated(["trace_key", "chunk_idx"]).any()
