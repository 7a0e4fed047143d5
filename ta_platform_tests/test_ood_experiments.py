"""OOD system-prompt experiments: prompt-set validation, delta computations, permutation test, results."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ta_platform.common.faults import DataFault
from ta_platform.preferences.judges import SimulatedJudge, Task
from ta_platform.preferences.ood import (
    DEFAULT_PROMPT_SET,
    EXPERIMENTS,
    OodPrompt,
    behavioural_deltas,
    check_prompt_lengths,
    choose_targets,
    delta_statistics,
    direction_agreement,
    incomplete_results,
    load_prompt_set,
    matched_comparisons,
    permutation_p_value,
    probe_deltas,
    prompt_frame,
    results_table,
    scatter_png,
    sign_agreement,
    simulated_shift,
)
from ta_platform.preferences.tasks import TOPICS, generate_task_pool

GOOD = '''[[prompts]]
id = "hate_math"
experiment = "induce"
system_prompt = "You hate mathematics."
targets = { mathematics = -1 }

[[prompts]]
id = "love_cooking"
experiment = "competing"
system_prompt = "You love cooking and hate travel."
targets = { cooking = 1, travel = -1 }
'''


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prompts.toml"
    path.write_text(text)
    return path


def test_default_prompt_set_covers_every_experiment():
    prompts = load_prompt_set(DEFAULT_PROMPT_SET, TOPICS)
    assert {p.experiment for p in prompts} == set(EXPERIMENTS)
    assert len({p.system_prompt for p in prompts}) == len(prompts)
    competing = [p for p in prompts if p.experiment == "competing"]
    assert all(len(p.targets) == 2 and sorted(p.targets.values()) == [-1, 1] for p in competing)
    frame = prompt_frame(prompts)
    assert set(frame.columns) == {"experiment", "prompt_id", "category", "system_prompt", "target", "direction"}


@pytest.mark.parametrize("change, message", [
    (('system_prompt = "You hate mathematics."', 'system_prompt = "  "'), "prompt 1 (hate_math): empty system prompt"),
    (('You love cooking and hate travel.', 'you hate   MATHEMATICS.'),
     "prompt 2 (love_cooking): duplicate system prompt (same text as 'hate_math')"),
    (('id = "love_cooking"', 'id = "hate_math"'), "prompt 2 (hate_math): duplicate id 'hate_math'"),
    (('targets = { mathematics = -1 }', 'targets = { cheese = 1 }'), "prompt 1 (hate_math): unknown target topic(s) ['cheese']"),
    (('mathematics = -1', 'mathematics = 2'), "prompt 1 (hate_math): target directions must be +1 or -1"),
    (('experiment = "induce"', 'experiment = "vibes"'), "prompt 1 (hate_math): experiment 'vibes' is not one of"),
    (('[[prompts]]\nid = "hate_math"', '[[prompts]\nid = "hate_math"'), "cannot parse TOML"),
])
def test_bad_prompt_sets_name_the_file_and_the_prompt(tmp_path, change, message):
    path = _write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(DataFault, match=re.escape(f"{path}: {message}")):
        load_prompt_set(path, TOPICS)


def test_missing_or_empty_prompt_set(tmp_path):
    with pytest.raises(DataFault, match="prompt set file not found"):
        load_prompt_set(tmp_path / "nope.toml", TOPICS)
    with pytest.raises(DataFault, match="no \\[\\[prompts\\]\\] entries"):
        load_prompt_set(_write(tmp_path, "title = 'x'\n"), TOPICS)


def test_prompt_longer_than_context_is_named(tmp_path):
    prompts = load_prompt_set(_write(tmp_path, GOOD), TOPICS)
    count = {"hate_math": 40, "love_cooking": 5000}
    check_prompt_lengths(prompts, lambda p: count[p.prompt_id], 8192, "prompts.toml")
    with pytest.raises(DataFault, match="prompt 'love_cooking': its longest judge input is 5000 tokens, longer than "
                                        "the model's context of 4096"):
        check_prompt_lengths(prompts, lambda p: count[p.prompt_id], 4096, "prompts.toml")


@pytest.fixture(scope="module")
def study():
    pool = generate_task_pool(300, 10, seed=0)
    rng = np.random.default_rng(0)
    mu = pd.Series(rng.normal(size=len(pool)), index=pool["task_id"])
    prompts = [OodPrompt("hate_math", "induce", "You hate mathematics.", {"mathematics": -1.0}),
               OodPrompt("competing", "competing", "Love cooking, hate travel.", {"cooking": 1.0, "travel": -1.0})]
    targets = {p.prompt_id: choose_targets(pool, p, n_per_topic=4, n_off_target=3, seed=0) for p in prompts}
    return pool, mu, prompts, targets


def test_anagram_prompt_ids_get_their_own_targets(study):
    pool = study[0]
    one = OodPrompt("love_art", "induce", "You love art.", {"mathematics": 1.0})
    anagram = OodPrompt("art_love", "induce", "You adore art.", {"mathematics": 1.0})
    draws = [choose_targets(pool, p, n_per_topic=6, n_off_target=6, seed=0) for p in (one, anagram)]
    assert draws[0] != draws[1]  # a sum of character codes seeded both alike
    assert draws[0] == choose_targets(pool, one, n_per_topic=6, n_off_target=6, seed=0)  # seeded


def test_targets_and_utility_matched_comparisons(study):
    pool, mu, prompts, targets = study
    topic = dict(zip(pool["task_id"], pool["topic"], strict=True))
    assert [topic[t] for t in targets["hate_math"]].count("mathematics") == 4 and len(targets["hate_math"]) == 7
    target = targets["hate_math"][0]
    matched = matched_comparisons(pool, mu, target, {"mathematics"}, 20)
    assert len(matched) == 20 and target not in matched
    assert not {topic[c] for c in matched} & {"mathematics"}
    gaps = np.abs(mu.loc[matched] - mu.loc[target])
    others = pool[(pool["topic"] != "mathematics") & ~pool["task_id"].isin(matched + [target])]["task_id"]
    assert gaps.max() <= np.abs(mu.loc[others] - mu.loc[target]).min()  # the closest in utility


def test_behavioural_delta_follows_a_known_shift(study):
    pool, mu, prompts, targets = study
    topic = dict(zip(pool["task_id"], pool["topic"], strict=True))
    judge = SimulatedJudge(mu, 0.5, utility_shift=simulated_shift(prompts, topic, 1.0))
    deltas = behavioural_deltas(judge.with_system_prompt, pool, mu, prompts, targets, n_comparisons=10,
                                log=lambda _: None)
    assert set(deltas.columns) == {"experiment", "prompt_id", "task_id", "behavioural_delta", "n_comparisons"}
    assert (deltas["n_comparisons"] == 10).all()
    for row in deltas.itertuples():
        direction = {p.prompt_id: p.targets for p in prompts}[row.prompt_id].get(topic[row.task_id], 0.0)
        if direction == 0:
            assert row.behavioural_delta == pytest.approx(0.0)  # off-target tasks and matched comparisons unmoved
        else:
            assert np.sign(row.behavioural_delta) == direction and abs(row.behavioural_delta) > 0.2
    # the exact value: mean over the matched comparisons of Phi((mu_t + s - mu_c)/sd) - Phi((mu_t - mu_c)/sd)
    from scipy.special import ndtr

    target = targets["hate_math"][0]
    comps = matched_comparisons(pool, mu, target, {"mathematics"}, 10)
    gap = mu.loc[target] - mu.loc[comps].to_numpy()
    expected = np.mean(ndtr((gap - 1.0) / np.sqrt(0.5)) - ndtr(gap / np.sqrt(0.5)))
    got = deltas.set_index(["prompt_id", "task_id"]).loc[("hate_math", target), "behavioural_delta"]
    assert got == pytest.approx(expected)
    prompt_rows = prompt_frame(prompts)
    assert direction_agreement(deltas, prompt_rows, topic) == 1.0
    flipped = deltas.assign(behavioural_delta=-deltas["behavioural_delta"])
    assert direction_agreement(flipped, prompt_rows, topic) == 0.0


def test_probe_delta_is_with_minus_without(study):
    pool, mu, prompts, targets = study

    def score(system_prompt, ids):
        return np.array([len(t) + (10.0 if system_prompt else 0.0) for t in ids])

    deltas = probe_deltas(score, prompts, targets, "toy")
    assert (deltas["probe_delta"] == 10.0).all() and set(deltas["features"]) == {"toy"}


def _prompts(n_prompts: int, per_prompt: int) -> np.ndarray:
    return np.repeat([f"prompt{k}" for k in range(n_prompts)], per_prompt)


def test_statistics_sign_agreement_and_permutation_p():
    rng = np.random.default_rng(1)
    strata = _prompts(10, 6)
    b = rng.normal(0, 0.1, 60)
    tracked = b + rng.normal(0, 0.03, 60)
    stats = delta_statistics(b, tracked, strata, seed=0)
    assert stats["pearson_r"] > 0.9 and stats["spearman_r"] > 0.85 and stats["n"] == 60
    assert stats["p_value"] < 0.01  # within-prompt tracking is found
    noise = delta_statistics(b, rng.normal(size=60), strata, seed=0)
    assert noise["p_value"] > 0.05
    assert permutation_p_value(b, tracked, strata, seed=3) == permutation_p_value(b, tracked, strata, seed=3)
    # sign agreement only counts |behavioural delta| >= 0.02
    assert sign_agreement(np.array([0.5, -0.5, 0.01, -0.01]), np.array([1.0, -1.0, -1.0, 1.0])) == 1.0
    assert sign_agreement(np.array([0.5, -0.5]), np.array([-1.0, -1.0])) == 0.5
    assert np.isnan(sign_agreement(np.array([0.001]), np.array([1.0])))
    constant = delta_statistics(np.zeros(10), rng.normal(size=10), _prompts(2, 5))
    assert np.isnan(constant["pearson_r"]) and np.isnan(constant["p_value"]) and constant["n"] == 10


def test_a_between_prompt_offset_is_not_tracking():
    """Planted: each prompt moves behaviour and probe by a shared offset; within a prompt the probe delta is
    unrelated to which task moved. Permuting over all items reads the offsets as tracking (p ~ 0.001); the
    within-prompt null keeps them and must not. The same offsets plus real within-prompt tracking still count."""
    rng = np.random.default_rng(7)
    strata = _prompts(12, 8)
    offset = np.repeat(rng.normal(0, 0.3, 12), 8)
    behavioural = offset + rng.normal(0, 0.05, strata.size)
    probe = 3.0 * offset + rng.normal(0, 0.15, strata.size)  # the offset, plus noise unrelated to the task
    stats = delta_statistics(behavioural, probe, strata, n_permutations=500, seed=0)
    assert stats["pearson_r"] > 0.8  # the pooled correlation is there ...
    assert stats["p_value"] > 0.05, stats  # ... but nothing tracks WHICH task moved
    tracking = 3.0 * offset + 3.0 * (behavioural - offset) + rng.normal(0, 0.05, strata.size)
    assert delta_statistics(behavioural, tracking, strata, n_permutations=500, seed=0)["p_value"] < 0.01
    deltas = pd.DataFrame({"experiment": "induce", "prompt_id": strata, "task_id": [f"t{i}" for i in range(96)],
                           "features": "activations:m/L1", "behavioural_delta": behavioural, "probe_delta": probe})
    pooled = results_table(deltas, n_permutations=500, seed=0).set_index("experiment").loc["pooled"]
    assert pooled["p_value"] > 0.05  # the results table uses the prompt as the stratum


def test_results_table_per_experiment_and_pooled_and_the_completeness_check():
    rng = np.random.default_rng(2)
    rows = []
    for experiment in ("induce", "persona"):
        for features in ("activations:m/L1", "content:x"):
            b = rng.normal(0, 0.1, 12)
            rows += [{"experiment": experiment, "prompt_id": f"p{i % 3}", "task_id": f"t{i}", "features": features,
                      "behavioural_delta": b[i], "probe_delta": b[i] if features != "content:x" else rng.normal()}
                     for i in range(12)]
    deltas = pd.DataFrame(rows)
    results = results_table(deltas, n_permutations=200, seed=0)
    assert list(results.columns) == ["experiment", "features", "pearson_r", "spearman_r", "sign_agreement",
                                     "p_value", "n"]
    pooled = results.set_index(["experiment", "features"]).loc[("pooled", "activations:m/L1")]
    assert pooled["n"] == 24 and pooled["pearson_r"] == pytest.approx(1.0)
    assert incomplete_results(results, ["induce", "persona"]) == []
    assert incomplete_results(results, ["induce", "persona", "competing"]) == [
        "competing/activations:m/L1", "competing/content:x"]
    assert scatter_png(deltas, results)[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulated_shift_applies_only_to_its_prompt_and_topic():
    prompts = [OodPrompt("a", "induce", "You hate math.", {"mathematics": -1.0})]
    shift = simulated_shift(prompts, {"t1": "mathematics", "t2": "cooking"}, 0.7)
    assert shift("You hate math.", Task("t1", "x")) == -0.7
    assert shift("You hate math.", Task("t2", "x")) == 0.0
    assert shift("Something else", Task("t1", "x")) == 0.0
