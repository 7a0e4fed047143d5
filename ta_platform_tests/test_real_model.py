"""The real pretrained model, offline: GGUF inside an installed package -> converted safetensors folder.

Loads SmolLM2-135M-Instruct through the registry exactly as the platform does. One conversion is
shared by the session (``real_model.shared_model_cache``); the reconversion test pays for a second
one, on purpose: it is the behaviour under test.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from ta_platform.common.atomic import atomic_write_json
from ta_platform.common.hashing import sha256_file
from ta_platform.extraction.gguf_package import (
    CONVERSION_FILE,
    WEIGHTS_FILE,
    converted_folder,
    ensure_converted,
    read_conversion_record,
    stale_reason,
)
from ta_platform.extraction.loading import load_causal_lm, load_model, locate_weights
from ta_platform_tests.real_model import first_conversion, real_model_spec, shared_model_cache

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def real_model_cache():
    """The session's model cache holding the converted real model, exported as ``TA_MODEL_CACHE``."""
    cache = shared_model_cache()
    previous = os.environ.get("TA_MODEL_CACHE")
    os.environ["TA_MODEL_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("TA_MODEL_CACHE", None)
    else:
        os.environ["TA_MODEL_CACHE"] = previous


def _linked_copy(cache, tmp_path):
    """A second model cache whose converted folder hard-links the shared one (no 0.5 GB copy).

    Safe to plant faults in: files are only ever replaced (new inodes), never edited in place.
    """
    spec = real_model_spec()
    source = converted_folder(cache, str(spec.package), str(spec.gguf_file))
    copy_cache = tmp_path / "models"
    shutil.copytree(source, converted_folder(copy_cache, str(spec.package), str(spec.gguf_file)), copy_function=os.link)
    return copy_cache, converted_folder(copy_cache, str(spec.package), str(spec.gguf_file))


def test_first_load_converts_once_and_later_loads_reuse_the_folder(real_model_cache):
    spec = real_model_spec()
    first = first_conversion()
    assert first.converted and first.reason == "no conversion yet"
    gguf_sha = sha256_file(first.gguf_path)
    record = read_conversion_record(first.folder)
    assert record["gguf_sha256"] == gguf_sha and record["package_version"] == "0.1.2"
    assert {WEIGHTS_FILE, "config.json", "tokenizer.json"} <= set(record["files"])
    assert "quantization_config" not in (first.folder / "config.json").read_text()
    again = ensure_converted(str(spec.package), str(spec.gguf_file), real_model_cache)
    assert not again.converted and again.reason == "cached" and again.folder == first.folder
    assert (first.folder / WEIGHTS_FILE).stat().st_mtime_ns == again.folder.joinpath(WEIGHTS_FILE).stat().st_mtime_ns
    where = locate_weights(spec)  # TA_MODEL_CACHE from the fixture
    assert where.source == str(first.folder) and where.identity == gguf_sha


def test_real_model_forward_gives_finite_576_wide_states_at_30_layers(real_model_cache):
    import torch

    from ta_platform.extraction.extractor import TraceInput, extract_sentence_embeddings

    loaded = load_model(real_model_spec(), device="cpu")
    assert loaded.weights_hash == sha256_file(first_conversion().gguf_path)  # identity = the GGUF's sha256
    assert loaded.model.config.num_hidden_layers == 30 and loaded.max_length == 8192
    assert loaded.tokenizer.is_fast and loaded.dtype_name == "float32"
    text = "Let me compute 12 times 7. That is 84. So the answer is 84."
    ids = loaded.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        states = loaded.model(**ids, output_hidden_states=True).hidden_states
    assert len(states) == 31 and states[15].shape[-1] == 576
    assert all(torch.isfinite(s).all() for s in states)
    spans = [(0, 26), (27, 38), (39, len(text))]
    result = extract_sentence_embeddings(loaded.model, loaded.tokenizer, [TraceInput("t", text, spans)], [7, 15, 22])
    for layer in (7, 15, 22):
        assert result.embeddings[layer].shape == (3, 576) and np.isfinite(result.embeddings[layer]).all()
    assert not np.allclose(result.embeddings[15][0], result.embeddings[15][1])


def test_converted_weights_are_the_ggufs_and_the_model_is_pretrained(real_model_cache):
    """Independent check of the conversion: the gguf package's own dequantization of the embedding
    matrix equals the stored tensor, and the converted model answers like the trained model does."""
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    first = first_conversion()
    tensor = next(t for t in GGUFReader(str(first.gguf_path)).tensors if t.name == "token_embd.weight")
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(49152, 576)
    with safe_open(str(first.folder / WEIGHTS_FILE), "pt") as stored:
        np.testing.assert_array_equal(stored.get_tensor("model.embed_tokens.weight").numpy(), expected)

    model, tokenizer = load_causal_lm(real_model_spec(), device="cpu")
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])


def test_stale_conversions_are_detected(real_model_cache, tmp_path):
    spec = real_model_spec()
    _, folder = _linked_copy(real_model_cache, tmp_path)
    digest = sha256_file(first_conversion().gguf_path)
    assert stale_reason(folder, digest) is None
    assert "GGUF sha256 changed" in stale_reason(folder, "0" * 64)
    truncated = folder / WEIGHTS_FILE
    data = truncated.read_bytes()[:1000]
    truncated.unlink()
    truncated.write_bytes(data)  # a new inode: the shared folder keeps its file
    assert "wrong size" in stale_reason(folder, digest)
    (folder / CONVERSION_FILE).unlink()
    assert "missing or unreadable" in stale_reason(folder, digest)
    assert stale_reason(tmp_path / "nowhere", digest) == "no conversion yet"
    assert spec.num_layers == 30


def test_a_changed_gguf_sha_is_converted_again_never_reused(real_model_cache, tmp_path):
    spec = real_model_spec()
    copy_cache, folder = _linked_copy(real_model_cache, tmp_path)
    record = read_conversion_record(folder)
    real_sha = record["gguf_sha256"]
    atomic_write_json(folder / CONVERSION_FILE, record | {"gguf_sha256": "0" * 64})  # as if the GGUF had changed
    loaded = load_model(spec, device="cpu", cache_dir=copy_cache)
    assert loaded.weights_hash == real_sha
    assert read_conversion_record(folder)["gguf_sha256"] == real_sha
    assert (folder / WEIGHTS_FILE).stat().st_ino != (first_conversion().folder / WEIGHTS_FILE).stat().st_ino
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert ensure_converted(str(spec.package), str(spec.gguf_file), copy_cache).reason == "cached"
