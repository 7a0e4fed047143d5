"""The Hub as published now: Parquet shards under ``data/``, one row per file, read with range requests.

The loopback Hub serves each layout the repo has had: the folder layout, the August 2025 Parquet
re-publication (built here the way ``misc-scripts/push_hf_dataset.py`` built it), and both at once.
Traces must come out identical to the folder they were built from, reading only the row groups and
columns they need, with the same validation, cache and fault handling as folder files.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from huggingface_hub import constants

from ta_platform.common.faults import DataFault
from ta_platform.rollouts.generator import generate_dataset, read_manifest
from ta_platform.rollouts.http_retry import RetryPolicy
from ta_platform.rollouts.hub_parquet import SIZE_MISMATCH
from ta_platform.rollouts.hub_source import HubRolloutSource
from ta_platform.rollouts.layout import CORRECT_SPLIT, INCORRECT_SPLIT, KNOWN_MODELS, TRACE_FILES, TraceRef
from ta_platform.rollouts.parsing import MISSING_FILE, parse_trace
from ta_platform.rollouts.sources import LocalRolloutSource, load_traces
from ta_platform_tests.e2e import project_env, run_cli
from ta_platform_tests.hub_server import HubServer, build_parquet_layout
from ta_platform_tests.realdata import MATH_ROLLOUTS

REPO = "uzaymacar/math-rollouts"
QWEN, LLAMA = KNOWN_MODELS
FAST = RetryPolicy(attempts=4, total_s=20.0, base_s=0.05, max_wait_s=0.2)
BIG_ROLLOUT = random.Random(0).randbytes(50_000).hex()  # an incompressible chunk_<i>/solutions.json
N_CHUNK_FILES = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``folder``: 2 generated problems (+ big chunk_<i>/solutions.json files per trace); ``parquet``: the same
    as Parquet rows; ``both``: folder files beside the shards, one trace only in the shards; ``gappy``:
    Parquet rows without one trace's chunks_labeled.json and with one row whose content lost bytes."""
    base = tmp_path_factory.mktemp("hubpq")
    folder = base / "folder"
    generate_dataset(folder, seed=21, n_problems=2)
    for trace in folder.glob("*/*/*/problem_*"):
        for i in range(N_CHUNK_FILES):  # as in the real repo, rollouts are most of the bytes and rows
            (trace / f"chunk_{i}").mkdir()
            (trace / f"chunk_{i}" / "solutions.json").write_text(json.dumps([{"rollout": BIG_ROLLOUT, "chunk": i}]))
    ids = read_manifest(folder)["problem_ids"]
    parquet = base / "parquet"
    build_parquet_layout(folder, parquet, shards=3, rows_per_group=3)
    both = base / "both"
    shutil.copytree(folder, both)
    shutil.copytree(parquet / "data", both / "data")
    only_in_shards = TraceRef(LLAMA, INCORRECT_SPLIT, ids[1])
    shutil.rmtree(both / only_in_shards.relative_dir)
    gappy_source = base / "gappy_source"
    shutil.copytree(folder, gappy_source)
    gap = TraceRef(QWEN, CORRECT_SPLIT, ids[0])
    gappy = base / "gappy"
    build_parquet_layout(gappy_source, gappy, shards=2, rows_per_group=5,
                         skip=(f"{gap.relative_dir}/chunks_labeled.json",))
    _shrink_one_row(gappy, f"{TraceRef(LLAMA, CORRECT_SPLIT, ids[0]).relative_dir}/base_solution.json")
    plain = base / "plain"  # uncompressed with page CRCs: only the CRC sees a flipped bit in a value
    build_parquet_layout(folder, plain, shards=3, rows_per_group=3, compression="none")
    revisions = {"folder": folder, "parquet": parquet, "both": both, "gappy": gappy, "plain": plain}
    if MATH_ROLLOUTS.is_dir():
        real = base / "real"
        build_parquet_layout(MATH_ROLLOUTS, real, shards=4, rows_per_group=5, page_checksums=False)
        revisions["real"] = real
    with HubServer(REPO, revisions) as hub:
        yield hub, folder, ids, only_in_shards


def _shrink_one_row(layout: Path, path: str) -> None:
    """Rewrite the shard holding ``path`` with that row's content cut short (``size_bytes`` unchanged)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for shard in sorted((layout / "data").glob("*.parquet")):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        if any(r["path"] == path for r in rows):
            for r in rows:
                if r["path"] == path:
                    r["content"] = r["content"][: len(r["content"]) // 2]
            pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard, row_group_size=5)
            return
    raise AssertionError(f"{path} not in {layout}")


@pytest.fixture
def hub(served):
    served[0].clear()
    yield served[0]
    served[0].clear()


def make_source(hub, cache: Path, revision: str, policy: RetryPolicy = FAST) -> HubRolloutSource:
    return HubRolloutSource(repo_id=REPO, revision=revision, cache_dir=cache, endpoint=hub.endpoint, retry=policy)


def shard_gets(hub) -> list[str]:
    return [p for p in hub.downloads() if p.endswith(".parquet")]


def rollout_only_content_chunks(shards: list[Path]) -> list[tuple[str, int, int]]:
    """(shard name, first byte, end) of the ``content`` column chunk of every row group holding only
    ``chunk_<i>/solutions.json`` rows: what a trace load must never read."""
    import pyarrow.parquet as pq

    chunks = []
    for shard in shards:
        parquet = pq.ParquetFile(shard)
        content = parquet.schema_arrow.get_field_index("content")
        for g in range(parquet.num_row_groups):
            paths = parquet.read_row_group(g, columns=["path"]).column(0).to_pylist()
            if all(p.endswith("solutions.json") for p in paths):
                column = parquet.metadata.row_group(g).column(content)
                start = min(o for o in (column.dictionary_page_offset, column.data_page_offset) if o is not None)
                chunks.append((shard.name, start, start + column.total_compressed_size))
    return chunks


def requested_ranges(hub) -> list[tuple[str, int, int]]:
    """(shard name, first byte, last byte) of every range request on a shard."""
    out = []
    for r in hub.requests:
        if r.path.endswith(".parquet") and r.query.startswith("range=bytes="):
            first, _, last = r.query[len("range=bytes="):].partition("-")
            out.append((r.path.rsplit("/", 1)[-1], int(first), int(last)))
    return out


def whole_shard_gets(hub) -> list[str]:
    """GETs of a shard without a Range header (a whole-file download)."""
    return [r.path for r in hub.requests
            if r.method == "GET" and r.path.endswith(".parquet") and not r.query.startswith("range=")]


@pytest.mark.parametrize("revision, layout", [("folder", "folder"), ("parquet", "parquet"), ("both", "folder+parquet")])
def test_the_layout_is_detected(hub, tmp_path, revision, layout):
    source = make_source(hub, tmp_path / "cache", revision)
    assert source.layout() == layout
    assert f"{layout} layout" in source.describe()


def test_parquet_traces_equal_the_folder_they_were_built_from(hub, served, tmp_path):
    _, folder, _, _ = served
    source = make_source(hub, tmp_path / "cache", "parquet")
    traces, faults = load_traces(source)
    assert faults == [] and len(traces) == 8
    assert [t.ref for t in traces] == LocalRolloutSource(folder).list_traces()
    for trace in traces:
        expected = parse_trace(trace.ref, folder / trace.ref.relative_dir)
        assert (trace.problem, trace.base_solution, trace.chunks, trace.files) == (
            expected.problem, expected.base_solution, expected.chunks, expected.files)
        assert trace.source == f"hf://{REPO}@{hub.commit_of('parquet')}/{trace.ref.relative_dir}"
    # Only range requests on the shards: never a whole shard, and the big rollout rows are never read.
    assert shard_gets(hub) and whole_shard_gets(hub) == []
    shards = sorted((hub.revisions["parquet"].folder / "data").glob("*.parquet"))
    assert source.parquet.bytes_read() < sum(p.stat().st_size for p in shards)
    untouched = rollout_only_content_chunks(shards)
    assert untouched, "the fixture has row groups holding only rollouts"
    for shard, start, end in requested_ranges(hub):
        for name, chunk_start, chunk_end in untouched:
            assert shard != name or end < chunk_start or start >= chunk_end, "read a rollout-only content chunk"
    assert not list((tmp_path / "cache").rglob("solutions.json"))


def test_one_trace_reads_only_the_row_groups_that_hold_it(hub, served, tmp_path):
    _, folder, ids, _ = served
    cache = tmp_path / "cache"
    source = make_source(hub, cache, "parquet")
    source.list_traces()  # the index: footers and the path/size_bytes columns
    indexed = source.parquet.bytes_read()
    ref = TraceRef(QWEN, CORRECT_SPLIT, ids[0])
    traces, faults = load_traces(source, models=[ref.model], splits=[ref.split], problem_ids=[ref.problem_id])
    assert faults == [] and [t.ref for t in traces] == [ref]
    index = source.parquet.index()
    groups = {(index[f"{ref.relative_dir}/{n}"].shard, index[f"{ref.relative_dir}/{n}"].row_group) for n in TRACE_FILES}
    all_groups = {(loc.shard, loc.row_group) for loc in index.values()}
    assert len(groups) < len(all_groups)
    extracted = {p.relative_to(source.parquet.files_root).as_posix()
                 for p in source.parquet.files_root.rglob("*") if p.is_file()}
    assert extracted >= {f"{ref.relative_dir}/{n}" for n in TRACE_FILES}
    assert all(p.rsplit("/", 1)[-1] in TRACE_FILES for p in extracted)  # never a rollout row
    assert source.parquet.bytes_read() - indexed < sum(s.size for s in source.parquet.shards())


def test_a_second_load_needs_no_shard_request(hub, tmp_path):
    cache = tmp_path / "cache"
    first, _ = load_traces(make_source(hub, cache, "parquet"), models=[QWEN])
    assert len(first) == 4 and shard_gets(hub)
    hub.clear()
    second, faults = load_traces(make_source(hub, cache, "parquet"), models=[QWEN])
    assert faults == [] and [t.chunks for t in second] == [t.chunks for t in first]
    assert shard_gets(hub) == []  # the path index and the extracted files are cached per commit


def test_rollouts_come_from_their_rows(hub, served, tmp_path):
    _, folder, ids, _ = served
    ref = TraceRef(QWEN, CORRECT_SPLIT, ids[0])
    files = make_source(hub, tmp_path / "cache", "parquet").fetch_rollouts(ref)
    assert list(files) == list(range(N_CHUNK_FILES))
    for i, path in files.items():
        assert path.read_bytes() == (folder / ref.relative_dir / f"chunk_{i}" / "solutions.json").read_bytes()


def test_both_layouts_folder_files_first_then_rows(hub, served, tmp_path):
    _, folder, _, only_in_shards = served
    source = make_source(hub, tmp_path / "cache", "both")
    traces, faults = load_traces(source)
    assert faults == [] and len(traces) == 8
    downloaded = hub.file_requests("GET")
    assert not any(only_in_shards.relative_dir in p for p in downloaded)  # no folder files exist for it
    assert any(p.endswith("problem.json") for p in downloaded)  # folder files where they exist
    rows_used = {p.relative_to(source.parquet.files_root).as_posix()
                 for p in source.parquet.files_root.rglob("*") if p.is_file()}
    assert rows_used >= {f"{only_in_shards.relative_dir}/{n}" for n in TRACE_FILES}


@pytest.mark.fault
def test_missing_and_corrupt_rows_are_faults_naming_the_file(hub, served, tmp_path):
    _, _, ids, _ = served
    traces, faults = load_traces(make_source(hub, tmp_path / "cache", "gappy"))
    assert len(traces) == 6
    by_key = {f.item: f for f in faults}
    missing = by_key[TraceRef(QWEN, CORRECT_SPLIT, ids[0]).key]
    assert missing.kind == MISSING_FILE and missing.path.endswith("chunks_labeled.json")
    short = by_key[TraceRef(LLAMA, CORRECT_SPLIT, ids[0]).key]
    assert short.kind == SIZE_MISMATCH and "size_bytes" in short.problem
    assert ".parquet#" in short.path and short.path.endswith("base_solution.json")
    cache = tmp_path / "cache"
    assert not [p for p in cache.rglob("base_solution.json") if TraceRef(LLAMA, CORRECT_SPLIT, ids[0]).relative_dir in str(p)]


@pytest.mark.parametrize("kind", ["503", "reset", "truncate", "stall", "short", "flip"])
@pytest.mark.fault
def test_faults_on_range_requests_are_survived(hub, served, tmp_path, monkeypatch, kind):
    _, folder, _, _ = served
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # the read timeout a stall runs into
    fault = hub.inject(kind, path=".parquet", times=2)  # the first two: footer reads
    traces, faults = load_traces(make_source(hub, tmp_path / "cache", "parquet"), models=[QWEN], splits=[CORRECT_SPLIT])
    assert len(fault.served) == 2 and faults == [] and len(traces) == 2
    for trace in traces:
        for name in TRACE_FILES:
            cached = make_source(hub, tmp_path / "cache", "parquet").parquet.files_root / trace.ref.relative_dir / name
            assert cached.read_bytes() == (folder / trace.ref.relative_dir / name).read_bytes()


@pytest.mark.fault
def test_permanent_failure_on_a_shard_names_it_and_writes_nothing(hub, tmp_path):
    from ta_platform.rollouts.http_retry import HubUnavailableError

    hub.inject("503", path="default-00001-of-00003.parquet", times=-1)
    source = make_source(hub, tmp_path / "cache", "parquet", RetryPolicy(attempts=2, total_s=5, base_s=0.05))
    with pytest.raises(HubUnavailableError, match="default-00001-of-00003.parquet"):
        load_traces(source)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "parquet_" in str(p)]
    assert leftovers == []  # no index and no extracted file from a half-read repo


def test_check_data_reports_the_layout(hub, tmp_path):
    env = project_env(tmp_path / "storage", HF_ENDPOINT=hub.endpoint, TA_HF_CACHE=str(tmp_path / "hf"))
    result = run_cli(["ta-platform", "check-data", f"hf://{REPO}@parquet", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert f"hf://{REPO}@parquet: parquet layout" in result.stderr
    assert len(result.stdout.splitlines()) == 8
    folder = run_cli(["ta-platform", "check-data", f"hf://{REPO}@folder", "--json"], env)
    assert folder.returncode == 0 and "folder layout" in folder.stderr
    broken = run_cli(["ta-platform", "check-data", f"hf://{REPO}@gappy"], env)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "chunks_labeled.json" in broken.stdout and "size_bytes" in broken.stdout


@pytest.mark.realdata
@pytest.mark.skipif(not MATH_ROLLOUTS.is_dir(), reason=f"real traces absent: {MATH_ROLLOUTS}")
def test_real_traces_from_parquet_rows_equal_the_folder(hub, tmp_path):
    traces, faults = load_traces(make_source(hub, tmp_path / "cache", "real"))
    assert faults == [] and len(traces) == 24
    for trace in traces:
        expected = parse_trace(trace.ref, MATH_ROLLOUTS / trace.ref.relative_dir)
        assert trace.chunks == expected.chunks and trace.files == expected.files
    with pytest.raises(DataFault):
        make_source(hub, tmp_path / "cache", "real").fetch(TraceRef(QWEN, CORRECT_SPLIT, "999999"))


@pytest.mark.fault
def test_a_flipped_bit_in_a_data_page_is_caught_by_its_crc(hub, served, tmp_path):
    """A flipped bit inside a needed row's content, in an uncompressed page: without the page's CRC it
    would decode as another character of valid JSON of the right size."""
    _, folder, ids, _ = served
    ref = TraceRef(QWEN, CORRECT_SPLIT, ids[0])
    original = (folder / ref.relative_dir / "chunks_labeled.json").read_bytes()
    shards = sorted((hub.revisions["plain"].folder / "data").glob("*.parquet"))
    holder = next(p for p in shards if original in p.read_bytes())
    offset = holder.read_bytes().index(original) + len(original) // 2
    fault = hub.inject("flip", path=holder.name, offset=offset)
    source = make_source(hub, tmp_path / "cache", "plain")
    traces, faults = load_traces(source, models=[ref.model], splits=[ref.split], problem_ids=[ref.problem_id])
    assert len(fault.served) == 1 and faults == [] and [t.ref for t in traces] == [ref]
    assert (source.parquet.files_root / ref.relative_dir / "chunks_labeled.json").read_bytes() == original


@pytest.mark.fault
def test_an_unreachable_hub_serves_the_cached_rows(hub, tmp_path):
    """Offline, the rows extracted before are the cache: the same traces, no request."""
    import socket

    cache = tmp_path / "cache"
    online, _ = load_traces(make_source(hub, cache, "parquet"), models=[LLAMA])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    offline = HubRolloutSource(repo_id=REPO, revision="parquet", cache_dir=cache, endpoint=dead,
                               retry=RetryPolicy(attempts=2, total_s=1.0, base_s=0.05))
    traces, faults = load_traces(offline)
    assert faults == [] and [t.key for t in traces] == [t.key for t in online]
    assert [t.chunks for t in traces] == [t.chunks for t in online]
    assert offline.layout() == "parquet" and "offline" in offline.describe()
