"""HubRolloutSource end to end with the real huggingface_hub client against a loopback Hub server."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from huggingface_hub.errors import RevisionNotFoundError

from ta_platform.rollouts.generator import generate_dataset, read_manifest
from ta_platform.rollouts.http_retry import RetryPolicy
from ta_platform.rollouts.hub_source import HubRolloutSource
from ta_platform.rollouts.layout import CORRECT_SPLIT, INCORRECT_SPLIT, KNOWN_MODELS, TRACE_FILES, TraceRef
from ta_platform.rollouts.parsing import parse_trace
from ta_platform.rollouts.sources import LocalRolloutSource, load_traces, source_from_spec
from ta_platform_tests.hub_server import HubServer

REPO = "uzaymacar/math-rollouts"
QWEN, LLAMA = KNOWN_MODELS
REAL_ROLLOUTS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "math-rollouts"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Revision ``main``: 2 generated problems plus files that must never be downloaded (a
    ``chunk_0/solutions.json`` in every trace, a forced-answer split, a README). Revision ``v2``: the
    same with one problem removed and one trace without its chunks file. ``real``: the real samples."""
    base = tmp_path_factory.mktemp("hub")
    main = base / "main"
    generate_dataset(main, seed=21, n_problems=2)
    for trace in main.glob("*/*/*/problem_*"):
        (trace / "chunk_0").mkdir()
        (trace / "chunk_0" / "solutions.json").write_text(json.dumps([{"rollout": "never download me"}]))
    some_trace = next(main.glob(f"{QWEN}/*/{CORRECT_SPLIT}/problem_*"))
    shutil.copytree(some_trace, some_trace.parents[1] / "correct_base_solution_forced_answer" / some_trace.name)
    (main / "README.md").write_text("# math-rollouts (test copy)\n")
    ids = read_manifest(main)["problem_ids"]
    v2 = base / "v2"
    shutil.copytree(main, v2)
    for split_folder in v2.glob("*/*/*_base_solution"):
        shutil.rmtree(split_folder / f"problem_{ids[0]}")
    (v2 / TraceRef(LLAMA, INCORRECT_SPLIT, ids[1]).relative_dir / "chunks_labeled.json").unlink()
    revisions = {"main": main, "v2": v2}
    if REAL_ROLLOUTS.is_dir():
        revisions["real"] = REAL_ROLLOUTS
    with HubServer(REPO, revisions, page_size=2) as hub:
        yield hub, main, ids


@pytest.fixture
def hub(served):
    server = served[0]
    server.clear()
    return server


def make_source(hub, cache: Path, revision: str = "main", **kwargs) -> HubRolloutSource:
    return HubRolloutSource(repo_id=REPO, revision=revision, cache_dir=cache, endpoint=hub.endpoint, **kwargs)


def test_listing_filters_models_splits_and_problems(hub, served, tmp_path):
    _, _, ids = served
    source = make_source(hub, tmp_path / "cache")
    everything = source.list_traces()
    assert len(everything) == 8  # forced-answer split, README and chunk_0 folders are not traces
    assert everything == LocalRolloutSource(served[1]).list_traces()
    assert source.list_traces(models=[QWEN], splits=[CORRECT_SPLIT], problem_ids=[int(ids[0])]) == [
        TraceRef(QWEN, CORRECT_SPLIT, ids[0])
    ]
    assert source.list_traces(models=["no-such-model"]) == []
    cursors = [r for r in hub.requests if "cursor=" in r.query]
    assert cursors, "the server paginates with page_size=2; the client must follow the Link header"
    assert hub.downloads() == []  # listing downloads nothing


def test_load_downloads_only_the_three_files_per_trace(hub, served, tmp_path):
    source = make_source(hub, tmp_path / "cache")
    traces, faults = load_traces(source)
    assert faults == [] and len(traces) == 8
    wanted = sorted(f"{t.ref.relative_dir}/{name}" for t in traces for name in TRACE_FILES)
    assert sorted(hub.file_requests("HEAD")) == wanted  # each needed file resolved once
    # Identical files (problem.json is shared by a problem's 4 traces) have one ETag: fetched once.
    assert set(hub.downloads()) <= set(wanted) and len(hub.downloads()) < len(wanted)
    assert not any("solutions.json" in path or "forced_answer" in path for path in hub.file_requests())
    commit = hub.commit_of("main")
    for trace in traces:
        local = parse_trace(trace.ref, served[1] / trace.ref.relative_dir)
        assert trace.chunks == local.chunks and trace.files == local.files
        assert trace.source == f"hf://{REPO}@{commit}/{trace.ref.relative_dir}"
    assert commit in source.describe()


def test_second_load_reuses_the_cache_without_requests_for_files(hub, tmp_path):
    cache = tmp_path / "cache"
    first, _ = load_traces(make_source(hub, cache), models=[QWEN])
    hub.clear()
    second, faults = load_traces(make_source(hub, cache), models=[QWEN])
    assert faults == [] and [t.chunks for t in second] == [t.chunks for t in first]
    assert hub.file_requests() == []  # pinned to the commit: cached files need no HEAD and no GET
    assert (cache / "datasets--uzaymacar--math-rollouts" / "refs" / "main").read_text() == hub.commit_of("main")


def test_revisions_branch_commit_and_unknown(hub, served, tmp_path):
    _, _, ids = served
    traces, faults = load_traces(make_source(hub, tmp_path / "cache", revision="v2"))
    assert {t.problem_id for t in traces} == {ids[1]}
    assert [(f.item, f.kind) for f in faults] == [(TraceRef(LLAMA, INCORRECT_SPLIT, ids[1]).key, "missing_file")]
    assert faults[0].path.startswith(f"hf://{REPO}@{hub.commit_of('v2')}/") and faults[0].stage == "load"
    hub.clear()
    pinned = make_source(hub, tmp_path / "cache", revision=hub.commit_of("v2"))
    assert len(pinned.list_traces()) == 4
    assert not any("/revision/" in r.path for r in hub.requests)  # a commit hash needs no resolution
    with pytest.raises(RevisionNotFoundError):
        make_source(hub, tmp_path / "cache", revision="no-such-branch").list_traces()


def test_unreachable_hub_falls_back_to_the_cache(hub, tmp_path):
    cache = tmp_path / "cache"
    online, _ = load_traces(make_source(hub, cache), models=[LLAMA], splits=[CORRECT_SPLIT])
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead_endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    brief = RetryPolicy(attempts=2, total_s=1.0, base_s=0.05)  # an unreachable Hub is retried, within a budget
    offline_source = HubRolloutSource(repo_id=REPO, revision="main", cache_dir=cache, endpoint=dead_endpoint,
                                      retry=brief)
    offline, faults = load_traces(offline_source)
    assert faults == []
    assert [t.key for t in offline] == [t.key for t in online]  # exactly what the cache holds
    assert "offline" in offline_source.describe()
    never_cached = HubRolloutSource(repo_id=REPO, revision="v2", cache_dir=cache, endpoint=dead_endpoint, retry=brief)
    with pytest.raises(RuntimeError, match="cannot be resolved"):
        never_cached.list_traces()


def test_spec_switch_reaches_the_hub_source(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("TA_HF_CACHE", str(tmp_path / "hf"))
    source = source_from_spec(f"hf://{REPO}@v2")
    assert isinstance(source, HubRolloutSource) and source.cache_dir == (tmp_path / "hf").resolve()
    assert len(source.list_traces(splits=[CORRECT_SPLIT])) == 2


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_ROLLOUTS.is_dir(), reason=f"real traces absent: {REAL_ROLLOUTS}")
def test_real_traces_through_the_hub_client(hub, tmp_path):
    traces, faults = load_traces(make_source(hub, tmp_path / "cache", revision="real"))
    assert faults == [] and len(traces) == 24
    assert len(hub.file_requests("HEAD")) == 72 and set(hub.downloads()) <= set(hub.file_requests("HEAD"))
