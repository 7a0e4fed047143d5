"""One model resident at a time: ``ComputeResource.loaded`` frees a model before the next one loads.

Real tiny offline models (registry source "tiny"). The check sits in the loader itself: a wrapper
around the real ``load_model`` records, at the moment model B starts loading, whether model A's
object is already garbage (a weak reference to it is dead).
"""

from __future__ import annotations

import weakref

import pytest

torch = pytest.importorskip("torch")

from ta_platform.defs.compute import ComputeResource, resident_models  # noqa: E402
from ta_platform.extraction import loading  # noqa: E402
from ta_platform.extraction.registry import load_registry  # noqa: E402


@pytest.fixture()
def compute(tmp_path, monkeypatch):
    monkeypatch.setenv("TA_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.delenv("TA_MODEL_REGISTRY", raising=False)
    return ComputeResource(device="cpu", model_profile="embedded")


@pytest.fixture()
def specs():
    registry = load_registry("embedded")
    return registry["tiny-qwen2"], registry["tiny-llama"]


def test_previous_model_is_garbage_before_the_next_one_loads(compute, specs, monkeypatch):
    qwen2, llama = specs
    real_load = loading.load_model
    held: list[weakref.ref] = []
    seen_at_load: list[tuple[str, list[bool]]] = []

    def observed_load(spec, *args, **kwargs):
        seen_at_load.append((spec.key, [ref() is None for ref in held]))
        return real_load(spec, *args, **kwargs)

    monkeypatch.setattr(loading, "load_model", observed_load)
    with compute.loaded(qwen2) as first:
        held.append(weakref.ref(first.model))
        assert resident_models() == ["tiny-qwen2"]
        ids = first.tokenizer("one two", return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            first.model(input_ids=ids)  # used, so autograd/caches had a chance to hold references
    assert held[0]() is None and resident_models() == []
    with compute.loaded(llama) as second:
        assert type(second.model).__name__ == "LlamaModel"
    assert seen_at_load == [("tiny-qwen2", []), ("tiny-llama", [True])]
    with pytest.raises(RuntimeError, match="'tiny-qwen2' was released"):
        first.model(input_ids=ids)  # a stale handle fails loudly instead of silently keeping the model


def test_a_second_concurrent_load_is_refused_and_the_first_is_still_freed(compute, specs):
    qwen2, llama = specs
    with compute.loaded(qwen2) as first:
        ref = weakref.ref(first.model)
        with pytest.raises(RuntimeError, match="cannot load model 'tiny-llama': model 'tiny-qwen2' is still loaded"):
            with compute.loaded(llama):
                pass
        assert ref() is not None and resident_models() == ["tiny-qwen2"]
    assert ref() is None and resident_models() == []


def test_a_failing_block_still_releases_its_model(compute, specs):
    qwen2, _ = specs
    with pytest.raises(ValueError, match="boom"):
        with compute.loaded(qwen2) as first:
            ref = weakref.ref(first.model)
            raise ValueError("boom")
    assert ref() is None and resident_models() == []


def test_judge_model_loads_through_the_registry_with_the_resource_dtype(tmp_path, monkeypatch, specs):
    from ta_platform.preferences.judges import HFLogitJudge, Task

    monkeypatch.setenv("TA_MODEL_CACHE", str(tmp_path / "models"))
    compute = ComputeResource(device="cpu", dtype="bfloat16", model_profile="embedded")
    _, llama = specs
    with compute.loaded(llama, lm_head=True) as judge_model:
        ref = weakref.ref(judge_model.model)
        assert judge_model.model.get_output_embeddings() is not None  # the judge reads logits: head loaded
        assert judge_model.model.dtype == torch.bfloat16 and judge_model.dtype_name == "bfloat16"
        assert judge_model.device == "cpu" and not judge_model.model.training
        judge = HFLogitJudge(judge_model.model, judge_model.tokenizer, batch_size=2)
        p = judge.prefer_first([(Task("a", "write a poem"), Task("b", "solve a puzzle"))])
        assert p.shape == (1,) and 0.0 <= p[0] <= 1.0
        del judge
    assert ref() is None


def test_every_model_loading_step_runs_inside_the_gpu_pool():
    """Dagster 1.13's ``@asset_check`` takes ``pool=``: the spot check reloads models, so it holds the GPU slot."""
    from ta_platform.defs.activations.assets import sentence_activations
    from ta_platform.defs.activations.checks import rows_match_recomputed_sample
    from ta_platform.defs.compute import GPU_POOL
    from ta_platform.defs.preferences.assets import prompt_activations

    assert rows_match_recomputed_sample.node_def.pool == GPU_POOL
    assert sentence_activations.op.pool == GPU_POOL and prompt_activations.op.pool == GPU_POOL
