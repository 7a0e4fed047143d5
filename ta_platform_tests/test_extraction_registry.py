"""Model registry, layer resolution, device/dtype rules, provenance fingerprint; all torch-free and fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ta_platform.extraction.config import ExtractionConfig
from ta_platform.extraction.device import select_dtype_name
from ta_platform.extraction.provenance import build_provenance, layer_provenance, provenance_fingerprint
from ta_platform.extraction.registry import (
    DEFAULT_REGISTRY,
    RegistryError,
    UnknownModelError,
    get_model_spec,
    layer_key,
    load_registry,
    resolve_layer,
)


def test_fractions_resolve_to_indices_like_the_paper():
    assert resolve_layer(0.5, 62) == 31  # "Gemma 62 layers: 0.5 -> L31"
    assert resolve_layer(1.0, 48) == 47 and resolve_layer(0.0, 48) == 0
    assert resolve_layer(-1, 32) == 31 and resolve_layer("L12", 32) == 12
    assert layer_key(31) == "L31"
    with pytest.raises(ValueError, match="unknown layer 32"):
        resolve_layer(32, 32)
    with pytest.raises(ValueError, match="outside"):
        resolve_layer(1.5, 32)
    with pytest.raises(ValueError, match="unknown layer 'middle'"):
        resolve_layer("middle", 32)


def test_packaged_profiles(monkeypatch):
    monkeypatch.delenv("TA_MODEL_REGISTRY", raising=False)
    monkeypatch.delenv("TA_MODEL_PROFILE", raising=False)
    embedded = load_registry()
    assert set(embedded) == {"tiny-qwen2", "tiny-llama"}
    assert embedded["tiny-qwen2"].trace_model == "deepseek-r1-distill-qwen-14b"
    assert embedded["tiny-llama"].trace_model == "deepseek-r1-distill-llama-8b"
    assert embedded["tiny-llama"].layer_keys() == ["L2", "L4", "L6"]
    monkeypatch.setenv("TA_MODEL_PROFILE", "paper")
    paper = load_registry()
    assert paper["r1-distill-qwen-14b"].model_id == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert paper["r1-distill-qwen-14b"].layer_indices() == [12, 24, 36]
    assert paper["r1-distill-llama-8b"].layer_indices([0.5, 31]) == [16, 31]


def test_unknown_model_key_and_bad_entries_are_clear(tmp_path, monkeypatch):
    with pytest.raises(UnknownModelError, match="unknown model key 'gpt-9'.*tiny-llama"):
        get_model_spec("gpt-9", profile="embedded", path=DEFAULT_REGISTRY)
    with pytest.raises(RegistryError, match="unknown profile"):
        load_registry("nope", DEFAULT_REGISTRY)
    user = tmp_path / "models.toml"
    user.write_text('[models.mine]\nsource = "local"\npath = "ckpt"\nnum_layers = 4\nlayers = [0.5, 3]\n'
                    'trace_model = "x"\n')
    monkeypatch.setenv("TA_MODEL_REGISTRY", str(user))
    mine = get_model_spec("mine")
    assert mine.path == tmp_path / "ckpt" and mine.layer_indices() == [2, 3]
    user.write_text('[models.bad]\nsource = "local"\npath = "x"\nnum_layers = 4\nlayers = [9]\ntrace_model = "x"\n')
    with pytest.raises(RegistryError, match="model 'bad'.*unknown layer 9"):
        load_registry()
    user.write_text('[models.bad]\nsource = "hub"\nid = "a/b"\nnum_layers = 4\ndtype = "float16"\ntrace_model = "x"\n')
    with pytest.raises(RegistryError, match="float16"):
        load_registry()


def test_dtype_rules():
    assert select_dtype_name("cpu") == "float32" and select_dtype_name("cuda:0") == "bfloat16"
    assert select_dtype_name("mps") == "bfloat16" and select_dtype_name("cuda", "float32") == "float32"
    with pytest.raises(ValueError, match="float16"):
        select_dtype_name("cuda", "float16")


def _provenance(**changes):
    base = dict(model_key="m", model_id="tiny:llama", revision="r", weights_hash="w", tokenizer_hash="t",
                layers=[2, 4], pooling="mean", compute_dtype="float32", max_length=8192, inputs_hash="i",
                code_hash="c")
    return build_provenance(**(base | changes))


def test_fingerprint_is_stable_and_changes_with_every_input():
    reference = provenance_fingerprint(_provenance())
    reordered = _provenance(layers=[4, 2])
    assert provenance_fingerprint(reordered) == reference
    for change in [dict(weights_hash="w2"), dict(revision="r2"), dict(tokenizer_hash="t2"), dict(layers=[2]),
                   dict(pooling="last"), dict(compute_dtype="bfloat16"), dict(inputs_hash="i2"),
                   dict(code_hash="c2"), dict(max_length=4096), dict(model_id="tiny:qwen2")]:
        assert provenance_fingerprint(_provenance(**change)) != reference, change
    run = _provenance()
    assert provenance_fingerprint(layer_provenance(run, 2)) != provenance_fingerprint(layer_provenance(run, 4))
    with pytest.raises(ValueError, match="never float16"):
        _provenance(storage_dtype="float16")


def test_light_modules_do_not_import_torch():
    code = ("import sys; import ta_platform.extraction as e; "
            "from ta_platform.extraction import registry, config, provenance, store, checks, spans, batching, device, "
            "resumable, loading; e.load_registry; print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_extraction_config_resolves_and_fails_early():
    spec, layers = ExtractionConfig("tiny-qwen2", layers=(0.5, "L7"), registry_path=str(DEFAULT_REGISTRY),
                                    profile="embedded").resolve()
    assert spec.arch == "qwen2" and layers == [4, 7]
    with pytest.raises(ValueError, match="unknown pooling"):
        ExtractionConfig("tiny-qwen2", pooling="max", registry_path=str(DEFAULT_REGISTRY)).resolve()
    with pytest.raises(ValueError, match="unknown layer 8"):
        ExtractionConfig("tiny-qwen2", layers=(8,), registry_path=str(DEFAULT_REGISTRY), profile="embedded").resolve()
