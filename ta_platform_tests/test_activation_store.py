"""The out-of-core activation store: sharded incremental writes, memory-mapped reads, per-shard hashes,
bfloat16 storage, corrupt cache entries recomputed.

Real files throughout; the extraction cases run the embedded tiny Llama. Each fault a check exists
for is planted (a truncated shard, a flipped bit, a corrupt cache entry, float16 on 1e5 outliers)
and seen to be caught, naming the file.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ta_platform.common.atomic import NoSpaceError
from ta_platform.extraction import store
from ta_platform.extraction.checks import (
    check_all_finite,
    check_distinct_texts_distinct_vectors,
    check_no_constant_column,
    check_norms_in_band,
)
from ta_platform.extraction.registry import RegistryError, load_registry
from ta_platform.extraction.storage_dtypes import decode, encode
from ta_platform.extraction.store import (
    MANIFEST_FILE,
    PartitionError,
    PartitionWriter,
    load_partition,
    write_partition,
)

DIMS = 16


def _index(n: int, trace_rows: list[int] | None = None) -> pd.DataFrame:
    sizes = trace_rows or [n]
    keys = [f"t{i:03d}" for i, size in enumerate(sizes) for _ in range(size)]
    chunks = [c for size in sizes for c in range(size)]
    return pd.DataFrame({"trace_key": keys, "chunk_idx": np.asarray(chunks, dtype=np.int64)})


def _matrix(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_traces(folder: Path, matrix: np.ndarray, sizes: list[int], *, storage_dtype: str = "float32",
                  max_shard_bytes: int = 40 * DIMS * 4) -> Path:
    with PartitionWriter(folder, DIMS, storage_dtype=storage_dtype, max_shard_bytes=max_shard_bytes) as writer:
        start = 0
        for size in sizes:
            writer.append(matrix[start:start + size])
            start += size
        return writer.finish(_index(len(matrix), sizes), {"storage_dtype": storage_dtype, "fingerprint": "act-x"})


def test_writer_appends_trace_by_trace_into_hashed_shards_manifest_last(tmp_path):
    folder, matrix, sizes = tmp_path / "m" / "L1", _matrix(130), [7, 50, 1, 33, 39]
    writer = PartitionWriter(folder, DIMS, max_shard_bytes=40 * DIMS * 4)  # 40 rows per shard
    writer.append(matrix[:57])  # two traces: one full shard is on disk already, nothing is held back
    assert (folder / "shard-00000.bin").stat().st_size == 40 * DIMS * 4
    assert not (folder / MANIFEST_FILE).exists()
    writer.append(matrix[57:])
    writer.finish(_index(130), {"fingerprint": "act-x"})
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert [s["rows"] for s in manifest["shards"]] == [40, 40, 40, 10] and manifest["rows_per_shard"] == 40
    for shard in manifest["shards"]:
        assert _sha(folder / shard["file"]) == shard["sha256"] == manifest["files"][shard["file"]]
    assert manifest["files"]["index.parquet"] == _sha(folder / "index.parquet")
    assert manifest["dtype"] == "float32" and manifest["n_rows"] == 130 and manifest["layout"] == "shards-v1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "index.parquet", "manifest.json", "shard-00000.bin", "shard-00001.bin", "shard-00002.bin", "shard-00003.bin"]
    # the same rows appended in other trace sizes give the same files
    other = _write_traces(tmp_path / "again", matrix, sizes)
    assert all(_sha(other / s["file"]) == s["sha256"] for s in manifest["shards"])


def test_rows_columns_and_blocks_on_demand_equal_the_matrix(tmp_path):
    matrix = _matrix(130, seed=1)
    part = load_partition(_write_traces(tmp_path / "p", matrix, [130]))
    assert (part.n_rows, part.dims, part.dtype, len(part.shards)) == (130, DIMS, "float32", 4)
    picks = np.array([129, 0, 41, 41, 80, 39, 40, 7])  # unsorted, repeated, across shard boundaries
    np.testing.assert_array_equal(part.rows(picks), matrix[picks])
    np.testing.assert_array_equal(part.rows(picks, columns=[3, 0, 15]), matrix[picks][:, [3, 0, 15]])
    np.testing.assert_array_equal(part.rows(slice(35, 85), columns=slice(2, 9)), matrix[35:85, 2:9])
    mask = matrix[:, 0] > 0
    np.testing.assert_array_equal(part.rows(mask), matrix[mask])
    assert part.rows([]).shape == (0, DIMS) and part.rows(picks).dtype == np.float32
    seen = [(rows, block) for rows, block in part.iter_blocks(block_rows=17)]
    assert [len(r) for r, _ in seen] == [17] * 7 + [11]
    np.testing.assert_array_equal(np.concatenate([b for _, b in seen]), matrix)
    subset = np.array([5, 90, 3, 127])
    for rows, block in part.iter_blocks(subset, block_rows=3, columns=[1]):
        np.testing.assert_array_equal(block, matrix[rows][:, [1]])
    with pytest.raises(IndexError, match="outside"):
        part.rows([130])
    embeddings, index, manifest = part  # the legacy unpacking still works
    np.testing.assert_array_equal(embeddings, matrix)
    assert len(index) == 130 and manifest["fingerprint"] == "act-x"


def test_one_float32_shard_is_served_as_a_read_only_map_without_a_copy(tmp_path):
    matrix = _matrix(30, seed=2)
    part = load_partition(write_partition(tmp_path / "p", matrix, _index(30), {}))
    assert len(part.shards) == 1
    embeddings = part.embeddings
    assert isinstance(embeddings.base, np.memmap)
    assert not embeddings.flags.writeable
    np.testing.assert_array_equal(embeddings, matrix)


def test_bfloat16_encoding_matches_torch_bit_for_bit():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.standard_normal(5000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 5000),
        np.array([0.0, -0.0, 1e5, -1e5, 65504.0, 3.0e38, -3.3e38, 3.4028235e38, 1e-40, np.inf, -np.inf], np.float32),
        # exact ties between two bfloat16 values: round to the even one
        np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7F8000], dtype=np.uint32).view(np.float32),
    ])
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(encode(values[None, :], "bfloat16")[0], expected)
    back = torch.from_numpy(expected.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(decode(expected, "bfloat16"), back)
    nan = encode(np.array([[np.nan, -np.nan]], np.float32), "bfloat16")
    assert np.isnan(decode(nan, "bfloat16")).all()


def test_qwen2_outliers_of_1e5_survive_bfloat16_and_float16_stays_refused(tmp_path):
    matrix = _matrix(50, seed=4) * 3.0
    matrix[:, 5] = 1e5  # Qwen2's massive activations live in a few fixed dimensions
    matrix[7, 9] = -1.2e5
    with np.errstate(over="ignore"):
        assert np.isinf(matrix.astype(np.float16)[:, 5]).all()  # float16 would have overflowed
    part = load_partition(_write_traces(tmp_path / "bf16", matrix, [20, 30], storage_dtype="bfloat16"))
    stored = part.rows(slice(None))
    assert part.dtype == "bfloat16" and np.isfinite(stored).all()
    np.testing.assert_allclose(stored, matrix, rtol=2.0**-8, atol=0)
    assert stored[0, 5] == 99840.0  # the nearest bfloat16 to 1e5 (a spacing of 512 there)
    assert check_all_finite(part, part.index)[0]
    disk = sum(s["bytes"] for s in part.shards)
    assert disk == 50 * DIMS * 2  # half of float32
    with pytest.raises(ValueError, match="float16"):
        PartitionWriter(tmp_path / "f16", DIMS, storage_dtype="float16")
    with pytest.raises(ValueError, match="float16"), np.errstate(over="ignore"):
        write_partition(tmp_path / "f16b", matrix.astype(np.float16), _index(50), {})
    registry = tmp_path / "models.toml"
    registry.write_text('[models.m]\nsource = "hub"\nid = "a/b"\nnum_layers = 4\nstorage_dtype = "float16"\n'
                        'trace_model = "x"\n')
    with pytest.raises(RegistryError, match=r"models.toml: model 'm'.*float16.*65504"):
        load_registry(path=registry)


def test_paper_models_store_bfloat16_and_the_embedded_ones_float32():
    assert {spec.storage_dtype for spec in load_registry("paper").values()} == {"bfloat16"}
    assert {spec.storage_dtype for spec in load_registry("embedded").values()} == {"float32"}


@pytest.mark.fault
def test_truncated_shard_fails_at_load_naming_it_and_the_recovery(tmp_path):
    folder = _write_traces(tmp_path / "m" / "L3", _matrix(130), [130])
    shard = folder / "shard-00002.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(PartitionError, match=r"shard-00002\.bin: shard is \d+ bytes.*truncated.*rerunning the stage.*"
                                             r"or delete"):
        load_partition(folder)
    shard.unlink()
    with pytest.raises(PartitionError, match=r"shard-00002\.bin: shard is missing"):
        load_partition(folder)
    manifest = folder / MANIFEST_FILE
    manifest.write_text(manifest.read_text()[:100])  # a manifest cut short
    with pytest.raises(PartitionError, match=r"manifest\.json: unreadable manifest.*or delete"):
        load_partition(folder)
    _write_traces(tmp_path / "ok", _matrix(130), [130])
    index = tmp_path / "ok" / "index.parquet"
    index.write_bytes(index.read_bytes()[:-1] + b"\0")
    with pytest.raises(PartitionError, match=r"index\.parquet: does not match the sha256"):
        load_partition(tmp_path / "ok")


@pytest.mark.fault
def test_flipped_bit_is_caught_when_its_shard_is_first_read_and_by_verify(tmp_path):
    matrix = _matrix(130, seed=5)
    folder = _write_traces(tmp_path / "m" / "L3", matrix, [130])
    shard = folder / "shard-00001.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x01
    shard.write_bytes(bytes(data))
    part = load_partition(folder)  # sizes are right: the load itself reads no shard
    np.testing.assert_array_equal(part.rows([0, 39, 80]), matrix[[0, 39, 80]])  # shards 0 and 2 are intact
    with pytest.raises(PartitionError, match=r"shard-00001\.bin: does not match the sha256.*rerunning the stage"):
        part.rows([45])
    with pytest.raises(PartitionError, match=r"shard-00001\.bin"):
        load_partition(folder).verify()
    with pytest.raises(PartitionError, match=r"shard-00001\.bin"):
        _ = load_partition(folder).embeddings
    assert load_partition(folder, verify_hashes=False).rows([45]).shape == (1, DIMS)  # the explicit opt-out


def test_a_shard_is_hashed_once_per_process_and_again_when_replaced(tmp_path, monkeypatch):
    folder = _write_traces(tmp_path / "p", _matrix(130, seed=6), [130])
    hashed = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    load_partition(folder).rows([0, 1])
    load_partition(folder).rows([2, 3])
    load_partition(folder).rows([3])
    assert hashed.count("shard-00000.bin") == 1 and "shard-00001.bin" not in hashed
    _write_traces(folder, _matrix(130, seed=7), [130])  # rewritten: new files, checked again
    load_partition(folder).rows([0])
    assert hashed.count("shard-00000.bin") == 2


def test_a_rewrite_drops_the_old_manifest_first_and_stale_files_after(tmp_path):
    folder = _write_traces(tmp_path / "p", _matrix(130), [130])
    (folder / "embeddings.npy").write_bytes(b"an older layout's file")
    writer = PartitionWriter(folder, DIMS, max_shard_bytes=10**6)
    assert not (folder / MANIFEST_FILE).exists()  # the folder is an unfinished write from now on
    with pytest.raises(PartitionError, match="no manifest.json"):
        load_partition(folder)
    writer.append(_matrix(20, seed=8))
    writer.finish(_index(20), {})
    assert sorted(p.name for p in folder.iterdir()) == ["index.parquet", "manifest.json", "shard-00000.bin"]
    np.testing.assert_array_equal(load_partition(folder).embeddings, _matrix(20, seed=8))


@pytest.mark.fault
def test_an_aborted_write_leaves_no_temporary_file_and_no_manifest(tmp_path):
    folder = tmp_path / "p"
    with pytest.raises(RuntimeError, match="planted"):
        with PartitionWriter(folder, DIMS, max_shard_bytes=40 * DIMS * 4) as writer:
            writer.append(_matrix(100))  # two shards renamed, a third open
            raise RuntimeError("planted failure mid-write")
    assert list(folder.iterdir()) == []
    with pytest.raises(NoSpaceError, match=r"no space left on device while writing .*shard-00002\.bin"):
        with PartitionWriter(folder, DIMS, max_shard_bytes=40 * DIMS * 4) as writer:
            writer.append(_matrix(100))
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write into a full disk raises
    assert list(folder.iterdir()) == []
    with pytest.raises(ValueError, match="3 rows written but the index has 4"):
        with PartitionWriter(folder, DIMS) as writer:
            writer.append(_matrix(3))
            writer.finish(_index(4), {})
    assert list(folder.iterdir()) == []


@pytest.mark.fault
def test_a_partition_of_the_old_single_file_layout_is_refused_with_the_recovery(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    np.save(folder / "embeddings.npy", _matrix(4))
    (folder / MANIFEST_FILE).write_text(json.dumps({"n_rows": 4, "hidden_size": DIMS, "dtype": "float32"}))
    with pytest.raises(PartitionError, match=r"another layout.*embeddings\.npy.*delete"):
        load_partition(folder)


def test_checks_read_a_partition_block_by_block_with_the_same_verdicts(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "READ_BLOCK_BYTES", 25 * DIMS * 4)  # 25-row blocks: verdicts span blocks
    matrix = _matrix(130, seed=9)
    matrix[12] = matrix[100]
    matrix[50] *= 1000
    matrix[:, 6] = 1.5
    part = load_partition(_write_traces(tmp_path / "p", matrix, [130]))
    texts = [f"s{i}" for i in range(130)]
    for check in (check_no_constant_column, lambda e: check_norms_in_band(e, part.index),
                  lambda e: check_distinct_texts_distinct_vectors(e, part.index, texts)):
        passed, details = check(part)
        assert not passed and (passed, details) == check(matrix)
    assert check_no_constant_column(part)[1]["constant_columns"] == [6]
    assert check_norms_in_band(part, part.index)[1]["rows"][0]["row"] == 50
    assert check_distinct_texts_distinct_vectors(part, part.index, texts)[1]["clashes"][0]["rows"] == [12, 100]
    matrix[77, 3] = np.nan
    part = load_partition(_write_traces(tmp_path / "nan", matrix, [130]))
    passed, details = check_all_finite(part, part.index)
    assert not passed and (passed, details) == check_all_finite(matrix, part.index)
    assert details["rows"][0]["row"] == 77


# ---- extraction: streamed writes, storage dtype in the fingerprint, corrupt cache entries ----------

@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    pytest.importorskip("torch")
    from ta_platform.extraction.loading import load_model
    from ta_platform.extraction.registry import DEFAULT_REGISTRY, get_model_spec

    spec = get_model_spec("tiny-llama", profile="embedded", path=DEFAULT_REGISTRY)
    return load_model(spec, device="cpu", cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture
def one_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _traces(n: int, seed: int = 11):
    from ta_platform.extraction.extractor import TraceInput
    from ta_platform.extraction.synthetic import synthetic_traces

    return [TraceInput(t.key, t.text, t.char_spans) for t in synthetic_traces(n, 4, 12, seed=seed)]


def _extract(loaded, traces, root, layers=(2, 4), **options):
    from ta_platform.extraction.resumable import extract_to_partitions

    return extract_to_partitions(loaded, traces, list(layers), root, token_budget=0, **options)


def test_storage_dtype_enters_provenance_and_fingerprint_and_reuses_the_cache(llama, tmp_path, one_thread):
    traces = _traces(4)
    f32 = _extract(llama, traces, tmp_path)
    as_bf16 = dataclasses.replace(llama, spec=dataclasses.replace(llama.spec, storage_dtype="bfloat16"))
    bf16 = _extract(as_bf16, traces, tmp_path)
    assert bf16.traces_computed == 0  # the cache holds float32 rows: only the partitions are rewritten
    assert bf16.provenance["storage_dtype"] == "bfloat16" and f32.provenance["storage_dtype"] == "float32"
    assert bf16.fingerprints[4] != f32.fingerprints[4]
    part = load_partition(tmp_path / "tiny-llama" / "L4")
    assert part.dtype == part.manifest["storage_dtype"] == "bfloat16" and part.manifest["fingerprint"] == bf16.fingerprints[4]
    fresh = _extract(llama, traces, tmp_path / "fresh")
    reference = load_partition(tmp_path / "fresh" / "tiny-llama" / "L4").embeddings
    np.testing.assert_allclose(part.embeddings, reference, rtol=2.0**-8, atol=0)
    assert fresh.fingerprints == f32.fingerprints


@pytest.mark.fault
def test_a_corrupt_cache_entry_is_logged_never_used_and_recomputed(llama, tmp_path, caplog, one_thread):
    from ta_platform.extraction.resumable import trace_keys
    from ta_platform.extraction.store import cache_dir, entry_path

    traces = _traces(4, seed=12)
    first = _extract(llama, traces, tmp_path / "a")
    reference = {layer: load_partition(tmp_path / "a" / "tiny-llama" / f"L{layer}").embeddings.copy()
                 for layer in (2, 4)}
    keys = trace_keys(first.provenance, traces)
    cache = cache_dir(tmp_path / "a", "tiny-llama")
    flipped = entry_path(cache, keys[1], 4)  # a bit flipped inside the rows: the meta still reads fine
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x10
    flipped.write_bytes(bytes(data))
    truncated = entry_path(cache, keys[2], 2)  # cut short: not even the meta reads
    truncated.write_bytes(truncated.read_bytes()[:200])
    with caplog.at_level(logging.WARNING, logger="ta_platform.extraction.store"):
        second = _extract(llama, traces, tmp_path / "a")
    logged = caplog.text
    assert str(flipped) in logged and str(truncated) in logged and "corrupt activation cache entry" in logged
    assert second.corrupt_entries == [str(flipped)]  # found while streaming; the truncated one at planning
    assert second.traces_computed == 2 and second.computed_by_layer == {2: 1, 4: 1}
    for layer in (2, 4):
        np.testing.assert_array_equal(load_partition(tmp_path / "a" / "tiny-llama" / f"L{layer}").embeddings,
                                      reference[layer])
    third = _extract(llama, traces, tmp_path / "a")
    assert third.traces_computed == 0 and third.corrupt_entries == []


def test_the_writer_path_holds_one_trace_not_the_dataset(tmp_path, one_thread):
    """Traced Python/numpy allocations of a partition rebuild from the cache (the writer path), at 6 and
    24 token-level traces of a 1024-wide model: the peak may grow by the row index (O(rows), small), not
    by the layer (the old path concatenated every layer, then copied each to float32: >= 2x its bytes)."""
    from ta_platform.extraction.loading import load_model
    from ta_platform.extraction.store_memory import _token_traces, wide_llama

    loaded = load_model(wide_llama(tmp_path / "models", hidden=1024), device="cpu")
    peaks, layer_bytes = {}, {}
    for n in (6, 24):
        root = tmp_path / f"n{n}"
        traces = _token_traces(loaded.tokenizer, n, (30, 30), seed=13)  # equal lengths: one longest trace
        _extract(loaded, traces, root, layers=(1,))
        tracemalloc.start()
        summary = _extract(loaded, traces, root, layers=(1,))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert summary.traces_computed == 0
        layer_bytes[n] = summary.n_rows * 1024 * 4
    assert layer_bytes[24] > 3.5 * layer_bytes[6]
    assert peaks[24] - peaks[6] < 0.25 * (layer_bytes[24] - layer_bytes[6]), (peaks, layer_bytes)
