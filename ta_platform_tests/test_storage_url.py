"""``TA_STORAGE`` as a URL: the data, activations and probe stages on ``file://`` and on an in-memory
fsspec filesystem (the stand-in for ``s3://``: same code path, no network).

What could break: a URL taken for a relative folder name (``./file:/...``), an artifact written
locally but never published to the store, a half-uploaded key visible in the store, and a fresh
machine (an empty local mirror) unable to read what another wrote. The stages run in this process
(``ta-platform materialize``'s own entry point) because a ``memory://`` filesystem lives in one process.
"""

from __future__ import annotations

import re
import shutil
import sys
import uuid

import fsspec
import pytest

from ta_platform.cli.main import main
from ta_platform.rollouts.generator import generate_dataset
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY

pytestmark = pytest.mark.slow
STAGES = ["data", "activations", "probes"]
LOCAL_ONLY = ("dagster_home", "models", "hf_cache")  # the Dagster instance and model weights stay local


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage_url")
    generate_dataset(root / "data", seed=0, n_problems=6)
    registry = root / "registry.toml"
    registry.write_text(ONE_TINY_MODEL_REGISTRY)
    return root


def _env(monkeypatch, inputs, storage: str, **extra: str) -> None:
    # DAGSTER_HOME unset: the run makes <storage root>/dagster_home (and monkeypatch restores the variable)
    for name in ("DAGSTER_HOME", "TA_DUCKDB_PATH", "TA_MODEL_PROFILE", "TA_MAX_PROBLEMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TA_STORAGE", storage)
    monkeypatch.setenv("TA_DATA_SOURCE", str(inputs / "data"))
    monkeypatch.setenv("TA_MODEL_REGISTRY", str(inputs / "registry.toml"))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def _run_stages(capsys, monkeypatch, stages: list[str]) -> None:
    """``ta-platform materialize`` for these thought-anchor stages; each must succeed (a --stage list
    without the gate reports no gate, so the exit code is the stages')."""
    # The code location is built at import from the registry in force: an earlier in-process test in this
    # worker may have imported it under another registry, so this one imports it afresh (restored after).
    for name in [m for m in sys.modules if m == "ta_platform.definitions" or m.startswith("ta_platform.defs")]:
        monkeypatch.delitem(sys.modules, name)
    status = main(["materialize", "--study", "anchors", "--seeds", "0...0", *(f"--stage={s}" for s in stages)])
    captured = capsys.readouterr()
    for stage in stages:
        assert re.search(rf"^\[{stage}\] run \S+ succeeded", captured.out, re.M), \
            captured.out[-3000:] + captured.err[-3000:]
    assert status == 0, captured.err[-3000:]


def _artifacts(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.relative_to(root).parts[0] not in LOCAL_ONLY}


def test_a_file_url_is_that_folder(monkeypatch, inputs, tmp_path):
    """A ``file://`` URL is the plain folder (the stages then run exactly as on a path, which every
    other end-to-end test does): artifacts and metadata slices land there, nothing is mirrored."""
    import pandas as pd

    from ta_platform.common.atomic import atomic_write_text
    from ta_platform.common.paths import storage_path, storage_root

    folder = tmp_path / "store"
    _env(monkeypatch, inputs, f"file://{folder}", TA_STORAGE_CACHE=str(tmp_path / "unused_mirror"))
    assert storage_root() == folder.resolve()
    atomic_write_text(storage_path("reports", "r.md"), "x")
    MetadataStore().replace_slice("faults", pd.DataFrame([dict(stage="s", item="i", path="p", kind="k", problem="q")]),
                                  {"stage": "s"})
    assert (folder / "reports" / "r.md").read_text() == "x"
    assert MetadataStore(folder / "metadata.duckdb").read_table("faults")["stage"].tolist() == ["s"]
    assert not (tmp_path / "unused_mirror").exists()


def test_a_memory_store_receives_every_artifact_and_a_fresh_mirror_reads_it_back(monkeypatch, inputs, tmp_path, capsys):
    url = f"memory://ta-test-{uuid.uuid4().hex[:8]}/lab"
    mirror = tmp_path / "mirror"
    _env(monkeypatch, inputs, url, TA_STORAGE_CACHE=str(mirror))
    _run_stages(capsys, monkeypatch, STAGES)
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    remote = {key.removeprefix(f"/{root}/") for key in fs.find(f"/{root}")}
    assert not [key for key in remote if key.rsplit("/", 1)[-1].startswith(".")], "a temporary upload key is left"
    local = _artifacts(mirror)
    # everything the stages committed locally is in the store (superseded metadata slices may be gone there)
    # the writer lock and the terminal's log file belong to this machine, not to the shared store
    assert {p for p in local if not p.startswith(("metadata.tables/", "locks/", "logs/"))} <= remote
    assert any(p.startswith("activations/") for p in remote) and any(p.startswith("metadata.tables/probe_metrics/") for p in remote)
    expected = MetadataStore(mirror / "metadata.duckdb").read_table("probe_metrics")

    # a new machine: an empty mirror reads the tables from the store, and the probe stage reads the
    # activations another machine extracted
    shutil.rmtree(mirror)
    fresh = tmp_path / "fresh_mirror"
    monkeypatch.setenv("TA_STORAGE_CACHE", str(fresh))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert len(MetadataStore().read_table("probe_metrics")) == len(expected) > 0
    _run_stages(capsys, monkeypatch, ["probes"])
    assert any(p.startswith("activations/") for p in _artifacts(fresh))
