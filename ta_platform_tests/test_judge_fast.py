"""The platform's logit judge on the real pretrained model: exactly the uncached forward, faster, never
generating; the generate-and-parse reference agrees with it; prompts over the context are refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ta_platform.cli.bench_judge import compare, sample_pairs
from ta_platform.defs.compute import ComputeResource
from ta_platform.preferences.judges import (
    GenerateParseJudge,
    GreedyJudge,
    HFLogitJudge,
    PromptTooLongError,
    Task,
    common_prefix_length,
)
from ta_platform_tests.real_model import REAL_MODEL_KEY, shared_model_cache

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judge_model():
    previous = os.environ.get("TA_MODEL_CACHE")
    os.environ["TA_MODEL_CACHE"] = str(shared_model_cache())
    compute = ComputeResource(model_profile="embedded")
    with compute.loaded(compute.registry()[REAL_MODEL_KEY], lm_head=True) as held:
        yield held
    if previous is None:
        os.environ.pop("TA_MODEL_CACHE", None)
    else:
        os.environ["TA_MODEL_CACHE"] = previous


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0 and common_prefix_length([]) == 0


def test_shared_prefix_cache_gives_the_uncached_probabilities(judge_model):
    pairs = sample_pairs(6, seed=3)  # a 4-regular graph: tasks shown first several times (second-level prefix)
    for system_prompt in (None, "You hate mathematics."):
        fast = HFLogitJudge(judge_model.model, judge_model.tokenizer, system_prompt, batch_size=5)
        plain = HFLogitJudge(judge_model.model, judge_model.tokenizer, system_prompt, share_prefix=False)
        for got, want in zip(fast.order_probabilities(pairs), plain.order_probabilities(pairs), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)
    averaged = fast.prefer_first(pairs)
    swapped = fast.prefer_first([(b, a) for a, b in pairs])
    np.testing.assert_allclose(averaged + swapped, 1.0, atol=1e-6)  # both orders averaged: antisymmetric
    assert set(GreedyJudge(fast).prefer_first(pairs)) <= {0.0, 0.5, 1.0}


def test_generate_and_parse_agrees_with_the_option_logits(judge_model):
    pairs = sample_pairs(2, seed=5)[:2]
    fast = HFLogitJudge(judge_model.model, judge_model.tokenizer)
    naive = GenerateParseJudge(judge_model.model, judge_model.tokenizer)
    result = compare(fast.order_probabilities(pairs), naive.order_choices(pairs))
    assert result["n_orders"] == 4
    if result["naive_unparsed"] < 4:
        assert result["agreement"] == 1.0  # the greedy letter is the larger of the two option logits


def test_prompt_longer_than_the_context_is_refused_by_name(judge_model):
    judge = HFLogitJudge(judge_model.model, judge_model.tokenizer, "You love cooking.", max_length=64)
    long_task = Task("long", "Explain the history of bread. " * 20)
    with pytest.raises(PromptTooLongError, match="exceeds the model's context of 64 tokens \\(system prompt "
                                                 "'You love cooking.'\\)"):
        judge.prefer_first([(long_task, Task("short", "Say hi."))])
