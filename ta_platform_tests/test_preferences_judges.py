"""Judges: the HF logit judge on a tiny saved/loaded model, the simulated judge, planted utilities."""

from __future__ import annotations

import numpy as np
import pytest

from ta_platform.preferences.judges import (
    HFLogitJudge,
    PairwiseJudge,
    SimulatedJudge,
    Task,
    planted_utilities,
)

PAIRS = [
    (Task("p", "write a poem about the sea"), Task("m", "solve a math puzzle")),
    (Task("m", "solve a math puzzle"), Task("c", "cook a vegetarian lasagna for four friends tonight")),
    (Task("c", "cook a vegetarian lasagna for four friends tonight"), Task("p", "write a poem about the sea")),
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A 2-layer Llama (hidden 32) and a BPE tokenizer trained here, both saved and reloaded."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    folder = tmp_path_factory.mktemp("tiny_lm")
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    corpus = [f"Which of these two tasks would you rather do? Task A: {a.prompt} Task B: {b.prompt} "
              "Reply with the letter A or B only. Answer: A Answer: B" for a, b in PAIRS] * 10
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(corpus, trainer)
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(folder / "tok")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tok")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    model = AutoModelForCausalLM.from_pretrained(folder / "model")
    return model, tokenizer


def _favour_token(model, token_id: int, strength: float):
    """Give the LM head a bias so ``token_id`` wins regardless of the input."""
    import torch

    head = model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[token_id] = strength
    model.set_output_embeddings(biased)
    return head


def test_hf_judge_asks_both_orders_and_is_antisymmetric(tiny_lm):
    model, tokenizer = tiny_lm
    judge = HFLogitJudge(model, tokenizer, batch_size=2)
    assert isinstance(judge, PairwiseJudge)
    seen = []
    original = judge.option_probabilities
    judge.option_probabilities = lambda prompts, groups=None: (seen.extend(prompts), original(prompts, groups))[1]
    p = judge.prefer_first(PAIRS)
    assert len(seen) == 2 * len(PAIRS)
    for (a, b), forward, backward in zip(PAIRS, seen[:3], seen[3:], strict=True):
        assert forward.index(a.prompt) < forward.index(b.prompt)
        assert backward.index(b.prompt) < backward.index(a.prompt)
    swapped = HFLogitJudge(model, tokenizer, batch_size=2).prefer_first([(b, a) for a, b in PAIRS])
    np.testing.assert_allclose(p + swapped, 1.0, atol=1e-6)
    unbatched = HFLogitJudge(model, tokenizer, batch_size=1).prefer_first(PAIRS)
    np.testing.assert_allclose(p, unbatched, atol=1e-5)  # right padding does not change answers


def test_position_biased_model_yields_one_half_after_order_averaging(tiny_lm):
    model, tokenizer = tiny_lm
    judge = HFLogitJudge(model, tokenizer)
    head = _favour_token(model, judge.option_ids[0], 8.0)
    try:
        forward = judge.option_probabilities([judge.prompt_for(a.prompt, b.prompt) for a, b in PAIRS])
        assert (forward > 0.99).all()  # the model says "A" whatever it is shown
        np.testing.assert_allclose(judge.prefer_first(PAIRS), 0.5, atol=0.01)
    finally:
        model.set_output_embeddings(head)


def test_system_prompt_reaches_the_prompt(tiny_lm):
    model, tokenizer = tiny_lm
    judge = HFLogitJudge(model, tokenizer, system_prompt="You hate math.")
    assert judge.prompt_for("x", "y").startswith("You hate math.")
    assert judge.prefer_first(PAIRS).shape == (3,)


def test_simulated_judge_matches_thurstone_and_shifts_with_system_prompt():
    mu = {"p": 1.0, "m": 0.0, "c": -1.0}
    judge = SimulatedJudge(mu, 0.5, seed=0)
    p = judge.prefer_first(PAIRS)
    assert p[0] > 0.9 and p[2] < 0.1
    draws = np.mean([judge.sample_first_chosen(PAIRS[:1])[0] for _ in range(2000)])
    assert draws == pytest.approx(p[0], abs=0.03)
    hates_poems = judge.with_system_prompt("you hate poems")
    shifted = SimulatedJudge(mu, 0.5, utility_shift=lambda prompt, task: -3.0 if "poem" in task.prompt else 0.0)
    assert shifted.with_system_prompt("you hate poems").prefer_first(PAIRS)[0] < 0.05
    assert hates_poems.prefer_first(PAIRS)[0] == pytest.approx(p[0])  # no shift function -> unchanged


def test_planted_utilities_are_a_readout_plus_topic_plus_noise():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(200, 16))
    topics = np.repeat(["a", "b", "c", "d"], 50)
    planted = planted_utilities(acts, topics, seed=1, noise_scale=0.2)
    np.testing.assert_allclose(planted.mu, planted.readout + planted.topic_part + planted.noise)
    z = (acts - acts.mean(0)) / acts.std(0)
    assert abs(np.corrcoef(z @ planted.direction, planted.readout)[0, 1]) > 0.999
    assert planted.readout.std() == pytest.approx(1.0)
    assert set(planted.topic_effects) == {"a", "b", "c", "d"}
    again = planted_utilities(acts, topics, seed=1, noise_scale=0.2)
    np.testing.assert_array_equal(planted.mu, again.mu)
