"""A flaky Hub: faults planted through the loopback Hub server, read with the real huggingface_hub client.

Each fault is one the network or the Hub really produces (HTTP 500/503, a connection reset, a stalled
body, a truncated body, a short body, a flipped bit, a corrupt cache); the Hub source must retry with
backoff inside a bounded budget, resume or restart the download, check size and hash, and after a
permanent failure name the file and leave nothing partial in the cache.
"""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from ta_platform.rollouts.generator import generate_dataset, read_manifest
from ta_platform.rollouts.http_retry import HubUnavailableError, RetryPolicy
from ta_platform.rollouts.hub_source import HubRolloutSource
from ta_platform.rollouts.layout import CORRECT_SPLIT, KNOWN_MODELS, TraceRef
from ta_platform.rollouts.sources import load_traces
from ta_platform_tests.hub_server import HubServer

pytestmark = pytest.mark.fault

REPO = "uzaymacar/math-rollouts"
QWEN = KNOWN_MODELS[0]
FAST = RetryPolicy(attempts=4, total_s=20.0, base_s=0.05, max_wait_s=0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "main"
    generate_dataset(folder, seed=5, n_problems=1)
    problem_id = read_manifest(folder)["problem_ids"][0]
    with HubServer(REPO, {"main": folder}) as hub, HubServer(REPO, {"main": folder}, lfs_suffixes=(".json",)) as lfs:
        yield hub, lfs, folder, TraceRef(QWEN, CORRECT_SPLIT, problem_id)


@pytest.fixture
def hub(served):
    served[0].clear()
    yield served[0]
    served[0].clear()


def source(hub, cache, policy=FAST) -> HubRolloutSource:
    return HubRolloutSource(repo_id=REPO, cache_dir=cache, endpoint=hub.endpoint, retry=policy)


def load_one(hub, cache, ref, policy=FAST):
    traces, faults = load_traces(source(hub, cache, policy), models=[ref.model], splits=[ref.split],
                                 problem_ids=[ref.problem_id])
    assert faults == [] and [t.ref for t in traces] == [ref]
    return traces[0]


def assert_cache_holds_the_original(cache, folder, ref):
    """Every cached file of the trace is byte-identical to the served one; nothing partial is left."""
    snapshots = list((cache / "datasets--uzaymacar--math-rollouts" / "snapshots").glob("*"))
    assert len(snapshots) == 1
    cached = sorted((snapshots[0] / ref.relative_dir).iterdir())
    assert [p.name for p in cached] == sorted(["problem.json", "base_solution.json", "chunks_labeled.json"])
    for path in cached:
        assert path.read_bytes() == (folder / ref.relative_dir / path.name).read_bytes(), path
    assert not list(cache.rglob("*.incomplete"))


@pytest.mark.parametrize("kind, method, where", [
    ("500", "GET", "chunks_labeled.json"),    # the download itself (the client does not retry a 5xx GET)
    ("503", "GET", "chunks_labeled.json"),
    ("503", "HEAD", "base_solution.json"),    # the metadata request
    ("503", "GET", "/tree/"),                 # the listing
    ("500", "GET", "/revision/"),             # resolving the branch to a commit
])
def test_http_errors_are_retried_with_backoff(hub, served, tmp_path, kind, method, where):
    _, _, folder, ref = served
    fault = hub.inject(kind, path=where, method=method, times=2)
    trace = load_one(hub, tmp_path / "cache", ref)
    assert len(fault.served) == 2, "the fault was planted on requests the source makes"
    assert trace.key == ref.key
    assert_cache_holds_the_original(tmp_path / "cache", folder, ref)


@pytest.mark.parametrize("where", ["chunks_labeled.json", "/tree/"])
def test_connection_reset_is_retried(hub, served, tmp_path, where):
    _, _, folder, ref = served
    fault = hub.inject("reset", path=where, times=2)
    load_one(hub, tmp_path / "cache", ref)
    assert len(fault.served) == 2
    assert_cache_holds_the_original(tmp_path / "cache", folder, ref)


def fetched_again(hub, name: str) -> bool:
    """The file's body was asked for again after the fault: resumed (a Range request) or restarted."""
    return len([p for p in hub.downloads() if p.endswith(name)]) >= 2


def test_truncated_body_is_fetched_again(hub, served, tmp_path):
    """The client resumes from the bytes it has (a Range request) or, when it had not yet handed any
    bytes over (a body smaller than its 10 MB chunk), restarts; either way the cached file is whole."""
    _, _, folder, ref = served
    fault = hub.inject("truncate", path="chunks_labeled.json")
    load_one(hub, tmp_path / "cache", ref)
    assert len(fault.served) == 1 and fetched_again(hub, "chunks_labeled.json")
    assert_cache_holds_the_original(tmp_path / "cache", folder, ref)


def test_stalled_body_times_out_and_is_resumed(hub, served, tmp_path, monkeypatch):
    _, _, folder, ref = served
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # the client's read timeout (HF_HUB_DOWNLOAD_TIMEOUT)
    fault = hub.inject("stall", path="chunks_labeled.json", stall_s=4.0)
    load_one(hub, tmp_path / "cache", ref)
    assert len(fault.served) == 1 and fetched_again(hub, "chunks_labeled.json")
    assert_cache_holds_the_original(tmp_path / "cache", folder, ref)


def test_short_body_is_caught_by_its_size_and_downloaded_again(hub, served, tmp_path):
    _, _, folder, ref = served
    fault = hub.inject("short", path="chunks_labeled.json")
    load_one(hub, tmp_path / "cache", ref)
    assert len(fault.served) == 1
    assert_cache_holds_the_original(tmp_path / "cache", folder, ref)


@pytest.mark.parametrize("lfs", [False, True], ids=["git-sha1-etag", "lfs-sha256-etag"])
def test_flipped_bit_is_caught_by_the_hash_and_downloaded_again(served, tmp_path, lfs):
    plain, lfs_hub, folder, ref = served
    hub = lfs_hub if lfs else plain
    hub.clear()
    fault = hub.inject("flip", path="chunks_labeled.json")
    trace = load_one(hub, tmp_path / "cache", ref)
    assert len(fault.served) == 1 and len(hub.downloads()) >= 4  # the corrupt body was fetched again
    assert_cache_holds_the_original(tmp_path / "cache", folder, ref)
    assert trace.chunks[0]["chunk"]
    hub.clear()


def test_a_corrupt_cached_file_is_replaced_not_used(hub, served, tmp_path):
    _, _, folder, ref = served
    cache = tmp_path / "cache"
    load_one(hub, cache, ref)
    pointer = next((cache / "datasets--uzaymacar--math-rollouts" / "snapshots").glob(f"*/{ref.relative_dir}/chunks_labeled.json"))
    blob = pointer.resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    hub.clear()
    load_one(hub, cache, ref)
    assert [p for p in hub.downloads() if p.endswith("chunks_labeled.json")], "the corrupt copy was downloaded again"
    assert_cache_holds_the_original(cache, folder, ref)


@pytest.mark.parametrize("kind", ["500", "flip", "short", "reset"])
def test_permanent_failure_names_the_file_and_leaves_nothing_partial(hub, served, tmp_path, kind):
    _, _, _, ref = served
    cache = tmp_path / "cache"
    fault = hub.inject(kind, path="chunks_labeled.json", times=-1)
    policy = RetryPolicy(attempts=3, total_s=30.0, base_s=0.05, max_wait_s=0.1)
    with pytest.raises(HubUnavailableError) as caught:
        load_traces(source(hub, cache, policy), models=[ref.model], splits=[ref.split], problem_ids=[ref.problem_id])
    assert f"{ref.relative_dir}/chunks_labeled.json" in str(caught.value) and "3 attempt(s)" in str(caught.value)
    assert len(fault.served) >= 3
    assert not list(cache.rglob("*.incomplete"))
    assert not list(cache.rglob("chunks_labeled.json")), "no pointer to a partial or corrupt file"
    repo = cache / "datasets--uzaymacar--math-rollouts"
    blobs = {p.name: p.stat().st_size for p in (repo / "blobs").iterdir()}
    pointers = {p.resolve().name for p in (repo / "snapshots").rglob("*") if p.is_file()}
    assert set(blobs) == pointers, "every blob left is a complete file some pointer uses"


def test_total_time_is_bounded(hub, served, tmp_path):
    _, _, _, ref = served
    hub.inject("503", path="chunks_labeled.json", times=-1)
    policy = RetryPolicy(attempts=100, total_s=1.0, base_s=0.2, max_wait_s=0.4)
    with pytest.raises(HubUnavailableError) as caught:
        load_traces(source(hub, tmp_path / "cache", policy), models=[ref.model], splits=[ref.split],
                    problem_ids=[ref.problem_id])
    assert caught.value.attempts < 100 and caught.value.seconds <= policy.total_s


def test_a_missing_file_is_not_retried(hub, served, tmp_path):
    """A 404 is an answer, not a fault of the network: the trace is reported at once, never retried."""
    _, _, _, ref = served
    traces, faults = load_traces(source(hub, tmp_path / "cache"), models=["no-such-model"])
    assert traces == [] and faults == []
    src = source(hub, tmp_path / "cache", RetryPolicy(attempts=50, total_s=600.0))
    src.list_traces()
    hub.clear()
    missing = TraceRef(ref.model, ref.split, "999999")
    with pytest.raises(Exception, match="missing on the Hub"):
        src.fetch(missing)
    assert len(hub.file_requests("HEAD")) == 1
