"""Extraction on the tiny offline models: equality with the naive path, one pass for all layers,
batching, last-token pooling, failure policy, resumable writer (real SIGKILL) and the activation cache.

The tiny models are built once per session into a tmp folder (a few seconds) and loaded back with
``from_pretrained``; traces are short so the whole module stays within a few tens of seconds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ta_platform.extraction.checks import (  # noqa: E402
    check_all_finite,
    check_distinct_texts_distinct_vectors,
    check_no_constant_column,
    check_norms_in_band,
    check_provenance_current,
    check_rows_match_keys,
)
from ta_platform.extraction.extractor import TraceInput, extract_sentence_embeddings  # noqa: E402
from ta_platform.extraction.loading import load_model  # noqa: E402
from ta_platform.extraction.naive import naive_sentence_embeddings  # noqa: E402
from ta_platform.extraction.provenance import layer_provenance  # noqa: E402
from ta_platform.extraction.registry import DEFAULT_REGISTRY, get_model_spec  # noqa: E402
from ta_platform.extraction.resumable import extract_to_partitions  # noqa: E402
from ta_platform.extraction.store import CACHE_DIR, PartitionError, load_partition  # noqa: E402
from ta_platform.extraction.synthetic import synthetic_traces  # noqa: E402
from ta_platform.extraction.tiny_models import build_tiny_model  # noqa: E402
from ta_platform_tests.torch_threads import one_thread  # noqa: F401,E402  (autouse fixture)

LAYERS = [1, 4, 6]  # not the last block (HF's last hidden state is after the final norm)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


def _load(key: str, cache: Path):
    spec = get_model_spec(key, profile="embedded", path=DEFAULT_REGISTRY)
    return load_model(spec, device="cpu", cache_dir=cache)


@pytest.fixture(scope="session")
def llama(tiny_cache: Path):
    return _load("tiny-llama", tiny_cache)


@pytest.fixture(scope="session")
def qwen2(tiny_cache: Path):
    return _load("tiny-qwen2", tiny_cache)


def _traces(n: int = 4, lo: int = 6, hi: int = 20, seed: int = 3) -> list[TraceInput]:
    return [TraceInput(t.key, t.text, t.char_spans, meta={"split": "correct_base_solution"})
            for t in synthetic_traces(n, lo, hi, seed=seed)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_builds_deterministically_and_loads_via_from_pretrained(llama, tiny_cache, tmp_path):
    rebuilt = build_tiny_model("llama", tmp_path / "again")
    cached = tiny_cache / "llama-tiny-v1"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha(rebuilt / name) == _sha(cached / name), name
    assert type(llama.model).__name__ == "LlamaModel"  # base model: no LM head is even loaded
    assert llama.tokenizer.is_fast and llama.model.config.max_position_embeddings >= 8192
    assert llama.tokenizer("x")["input_ids"][0] == llama.tokenizer.bos_token_id  # Llama adds a BOS


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_platform_path_equals_naive_path(arch, pooling, request):
    loaded = request.getfixturevalue(arch)
    traces = _traces(3)
    fast = extract_sentence_embeddings(loaded.model, loaded.tokenizer, traces, LAYERS, pooling=pooling)
    naive = naive_sentence_embeddings(loaded.model, loaded.tokenizer, traces, LAYERS, pooling=pooling)
    assert not fast.failures
    assert len(fast.index) == sum(len(t.char_spans) for t in traces)
    for layer in LAYERS:
        assert fast.embeddings[layer].dtype == np.float32
        np.testing.assert_allclose(fast.embeddings[layer], naive[layer], atol=1e-5, rtol=1e-4)


def test_all_layers_in_one_pass_equal_separate_runs_and_stop_at_deepest(llama):
    traces = _traces(3)
    calls = {i: 0 for i in range(llama.model.config.num_hidden_layers)}
    handles = [block.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, block in enumerate(llama.model.layers)]
    try:
        together = extract_sentence_embeddings(llama.model, llama.tokenizer, traces, LAYERS, token_budget=0)
    finally:
        for handle in handles:
            handle.remove()
    assert [calls[i] for i in range(7)] == [3] * 7 and calls[7] == 0  # one forward per trace, none above L6
    for layer in LAYERS:
        alone = extract_sentence_embeddings(llama.model, llama.tokenizer, traces, [layer], token_budget=0)
        np.testing.assert_array_equal(together.embeddings[layer], alone.embeddings[layer])


def test_batched_equals_unbatched(qwen2):
    traces = _traces(5, 4, 30, seed=11)
    one = extract_sentence_embeddings(qwen2.model, qwen2.tokenizer, traces, LAYERS, token_budget=0)
    batched = extract_sentence_embeddings(qwen2.model, qwen2.tokenizer, traces, LAYERS, token_budget=100_000)
    assert one.index.equals(batched.index)
    for layer in LAYERS:
        np.testing.assert_allclose(batched.embeddings[layer], one.embeddings[layer], atol=1e-5, rtol=1e-4)


def test_last_token_of_a_whole_prompt_span_is_the_prompt_activation(llama):
    prompts = [t.text[: t.prompt_end] for t in synthetic_traces(3, 2, 3, seed=5)]
    inputs = [TraceInput(f"prompt/{i}", p, [(0, len(p))]) for i, p in enumerate(prompts)]
    result = extract_sentence_embeddings(llama.model, llama.tokenizer, inputs, [4], pooling="last", token_budget=10_000)
    for row, prompt in enumerate(prompts):
        ids = llama.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            hidden = llama.model(input_ids=ids, output_hidden_states=True).hidden_states[5][0, -1]
        np.testing.assert_allclose(result.embeddings[4][row], hidden.numpy(), atol=1e-5, rtol=1e-4)


def test_failures_are_recorded_per_trace_and_the_rest_is_extracted(llama):
    good, long_one, misaligned, empty_sentence = _traces(4)
    misaligned = TraceInput(misaligned.key, misaligned.text, [(0, 5), (10, len(misaligned.text) + 50)])
    empty_sentence = TraceInput(empty_sentence.key, empty_sentence.text, [(0, 5), (7, 7)])
    long_one = TraceInput(long_one.key, long_one.text * 3, long_one.char_spans)
    n_long = len(llama.tokenizer(long_one.text)["input_ids"])
    limit = max(len(llama.tokenizer(t.text)["input_ids"]) for t in (good, misaligned, empty_sentence))
    assert n_long > limit
    result = extract_sentence_embeddings(llama.model, llama.tokenizer, [good, long_one, misaligned, empty_sentence],
                                         [2], max_length=limit)
    kinds = {f.item: f.kind for f in result.failures}
    assert kinds == {long_one.key: "too_long", misaligned.key: "misaligned_span", empty_sentence.key: "misaligned_span"}
    assert f"{n_long} tokens" in next(f.problem for f in result.failures if f.kind == "too_long")
    assert "sentence 1" in next(f.problem for f in result.failures if f.item == misaligned.key)
    assert set(result.index["trace_key"]) == {good.key}
    assert result.embeddings[2].shape[0] == len(good.char_spans)


def test_unknown_layer_and_slow_tokenizer_are_clear_errors(llama):
    with pytest.raises(ValueError, match="unknown layer.*8 decoder layers"):
        extract_sentence_embeddings(llama.model, llama.tokenizer, _traces(1), [8])
    from transformers.tokenization_python import PreTrainedTokenizer

    class CharTokenizer(PreTrainedTokenizer):  # a real slow (Python) tokenizer: no offsets
        def get_vocab(self):
            return {chr(i): i for i in range(256)}

        @property
        def vocab_size(self):
            return 256

        def _tokenize(self, text, **kwargs):
            return list(text)

        def _convert_token_to_id(self, token):
            return ord(token) % 256

        def _convert_id_to_token(self, index):
            return chr(index)

    with pytest.raises(TypeError, match="not a fast tokenizer"):
        extract_sentence_embeddings(llama.model, CharTokenizer(), _traces(1), [2])


_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)  # same as the parent: identical bits
    from ta_platform.extraction.extractor import TraceInput
    from ta_platform.extraction.loading import load_model
    from ta_platform.extraction.registry import DEFAULT_REGISTRY, get_model_spec
    from ta_platform.extraction.resumable import extract_to_partitions
    from ta_platform.extraction.synthetic import synthetic_traces
    cache, out = Path(sys.argv[1]), Path(sys.argv[2])
    loaded = load_model(get_model_spec("tiny-llama", profile="embedded", path=DEFAULT_REGISTRY), "cpu", cache_dir=cache)
    traces = [TraceInput(t.key, t.text, t.char_spans) for t in synthetic_traces(6, 4, 16, seed=21)]
    print("ready", flush=True)
    extract_to_partitions(loaded, traces, [1, 4, 6], out, token_budget=0, code_hash="test",
                          progress=lambda done, total: time.sleep(0.3))
""")


def _run_in_parent(loaded, out: Path, **overrides):
    traces = [TraceInput(t.key, t.text, t.char_spans) for t in synthetic_traces(6, 4, 16, seed=21)]
    options = dict(token_budget=0, code_hash="test") | overrides
    return extract_to_partitions(loaded, traces, [1, 4, 6], out, **options)


@pytest.mark.slow
def test_resume_after_sigkill_is_byte_identical(llama, tiny_cache, tmp_path):
    killed = tmp_path / "killed"

    def traces_cached() -> int:  # one entry per (trace, layer); a trace counts once all 3 layers are in
        names = [p.name.split(".L")[0] for p in (killed / "tiny-llama" / CACHE_DIR).rglob("*.npz")]
        return sum(1 for key in set(names) if names.count(key) == 3)

    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tiny_cache), str(killed)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and traces_cached() < 2:
            assert child.poll() is None, "child finished or crashed before it could be killed"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    n_before = traces_cached()
    assert 2 <= n_before < 6 and not (killed / "tiny-llama" / "L4" / "manifest.json").exists()

    resumed = _run_in_parent(llama, killed)
    assert resumed.traces_reused >= 2 and resumed.traces_computed == 6 - resumed.traces_reused
    fresh = _run_in_parent(llama, tmp_path / "fresh")
    assert fresh.traces_reused == 0 and fresh.fingerprints == resumed.fingerprints
    for layer in (1, 4, 6):
        for name in ("shard-00000.bin", "index.parquet", "manifest.json"):
            assert _sha(killed / "tiny-llama" / f"L{layer}" / name) == _sha(tmp_path / "fresh" / "tiny-llama" / f"L{layer}" / name)
    assert traces_cached() == 6  # the cache keeps every trace for later runs (more traces, new labels)


def test_cache_entries_of_other_code_or_pooling_are_not_reused_and_partitions_verify(llama, tmp_path):
    first = _run_in_parent(llama, tmp_path)
    again = _run_in_parent(llama, tmp_path)
    assert again.traces_reused == 6 and again.traces_computed == 0 and again.fingerprints == first.fingerprints
    changed = _run_in_parent(llama, tmp_path, code_hash="test-edited")
    assert changed.traces_reused == 0 and changed.fingerprints[4] != first.fingerprints[4]
    pooled_last = _run_in_parent(llama, tmp_path, pooling="last")
    assert pooled_last.traces_reused == 0 and pooled_last.run_fingerprint not in (first.run_fingerprint,
                                                                                  changed.run_fingerprint)

    X, index, manifest = load_partition(tmp_path / "tiny-llama" / "L4")
    assert manifest["layer"] == 4 and manifest["pooling"] == "last" and manifest["fingerprint"] == pooled_last.fingerprints[4]
    assert list(index.columns[:2]) == ["trace_key", "chunk_idx"] and X.dtype == np.float32
    assert check_provenance_current(manifest, layer_provenance(pooled_last.provenance, 4))[0]
    passed, details = check_provenance_current(manifest, layer_provenance(first.provenance, 4))
    assert not passed and set(details["differing_fields"]) == {"pooling"}

    (tmp_path / "tiny-llama" / "L4" / "shard-00000.bin").write_bytes(b"garbage")
    with pytest.raises(PartitionError, match="shard-00000.bin: shard is 7 bytes.*truncated"):
        load_partition(tmp_path / "tiny-llama" / "L4")


def test_checks_pass_on_real_embeddings_and_name_bad_rows(llama):
    traces = _traces(3)
    result = extract_sentence_embeddings(llama.model, llama.tokenizer, traces, [4])
    X, index = result.embeddings[4], result.index
    texts = [t.text[a:b] for t in traces for a, b in t.char_spans]
    expected = [(t.key, i) for t in traces for i in range(len(t.char_spans))]
    assert check_rows_match_keys(index, expected)[0]
    assert check_all_finite(X, index)[0]
    assert check_no_constant_column(X)[0]
    assert check_distinct_texts_distinct_vectors(X, index, texts)[0]
    assert check_norms_in_band(X, index)[0]

    broken = X.copy()
    broken[2, 0] = np.nan
    broken[5] = broken[6]
    broken[7] *= 1e4
    passed, details = check_all_finite(broken, index)
    assert not passed and details["rows"][0]["row"] == 2
    passed, details = check_distinct_texts_distinct_vectors(broken, index, texts)
    assert not passed and details["clashes"][0]["rows"] == [5, 6]
    passed, details = check_norms_in_band(np.nan_to_num(broken), index)
    assert not passed and [r["row"] for r in details["rows"]] == [7]
    assert not check_rows_match_keys(index, expected[:-1])[0]


def test_hub_models_load_from_the_hf_cache_under_storage_at_their_revision(tiny_cache, tmp_path, monkeypatch):
    """A Hub model resolves through ``<TA_STORAGE>/hf_cache`` (not the user's ~/.cache) at the
    registry's revision: with the Hub offline, a revision present there loads, another one does not."""
    import shutil

    from ta_platform.extraction.tiny_models import ensure_tiny_model

    folder = ensure_tiny_model("llama", tiny_cache)
    commit = "1" * 40
    repo = tmp_path / "storage" / "hf_cache" / "models--acme--tiny-llama"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(commit)
    registry = tmp_path / "models.toml"
    registry.write_text('[models.hubbed]\nsource = "hub"\nid = "acme/tiny-llama"\nrevision = "v1"\nnum_layers = 8\n'
                        'trace_model = "x"\n[models.other]\nsource = "hub"\nid = "acme/tiny-llama"\nrevision = "v2"\n'
                        'num_layers = 8\ntrace_model = "x"\n')
    for name, value in {"TA_STORAGE": str(tmp_path / "storage"), "HF_HUB_OFFLINE": "1",
                        "HF_HOME": str(tmp_path / "user_hf_home"), "TA_MODEL_REGISTRY": str(registry)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TA_HF_CACHE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    loaded = load_model(get_model_spec("hubbed"), device="cpu", cache_dir=tmp_path / "models")
    assert loaded.weights_hash == f"hub:{commit}" and loaded.model.config.num_hidden_layers == 8
    assert not (tmp_path / "user_hf_home").exists() and not (tmp_path / "models").exists()
    with pytest.raises(OSError):
        load_model(get_model_spec("other"), device="cpu", cache_dir=tmp_path / "models")
