"""The lag convention, the baselines and the lag probe on planted data (no model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ta_platform.chains.baselines import rate_by_key
from ta_platform.chains.lag_probes import LagConfig, best_f1_threshold, f1_at, run_lag_slice
from ta_platform.chains.lags import lag_pairs
from ta_platform.probing.metrics import auroc


def token_frame(n_chains: int = 30, length: int = 80, seed: int = 0) -> pd.DataFrame:
    """Chains with one backtracking section each at a random place (6-12 tokens long)."""
    rng = np.random.default_rng(seed)
    frames = []
    for c in range(n_chains):
        start, size = int(rng.integers(15, length - 20)), int(rng.integers(6, 13))
        in_bt = np.zeros(length, bool)
        in_bt[start:start + size] = True
        onset = np.zeros(length, bool)
        onset[start] = True
        frames.append(pd.DataFrame({
            "chain_id": f"c{c:03d}", "token_idx": np.arange(length), "position": np.arange(length) + 1,
            "token_id": rng.integers(0, 50, length), "n_tokens": length, "rel_position": np.arange(length) / (length - 1),
            "in_backtracking": in_bt, "backtrack_onset": onset, "section_index": np.where(in_bt, 0, -1)}))
    return pd.concat(frames, ignore_index=True)


FAST = LagConfig(lags=(-4, 0, 4), bootstrap_resamples=50, c_grid=(0.1,))


def test_positive_lag_pairs_token_t_with_token_t_plus_k_in_the_same_chain():
    tokens = token_frame(2, 40)
    source, target = lag_pairs(tokens, 3)
    assert (target - source == 3).all()
    assert (tokens["chain_id"].to_numpy()[source] == tokens["chain_id"].to_numpy()[target]).all()
    assert tokens["token_idx"].to_numpy()[source].max() == 36  # t + 3 must exist: t <= 36 of 0..39
    past_source, past_target = lag_pairs(tokens, -3)
    assert tokens["token_idx"].to_numpy()[past_source].min() == 3 and (past_source - past_target == 3).all()
    assert len(lag_pairs(tokens, 0)[0]) == len(tokens)
    with pytest.raises(ValueError, match="not contiguous"):
        lag_pairs(tokens.sample(frac=1, random_state=0), 1)


def test_probe_reads_the_future_only_at_the_lag_where_it_was_planted():
    """A feature at t equal to the label at t + 4: the lag +4 probe reads it, the lag -4 probe does not."""
    tokens = token_frame()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(len(tokens), 8))
    source, target = lag_pairs(tokens, 4)
    X[source, 0] += 3.0 * tokens["in_backtracking"].to_numpy()[target]
    result = run_lag_slice(tokens, X, 0, FAST)
    probe = result.metrics[(result.metrics["probe"] == "linear_probe")].set_index(["lag", "metric"])["value"]
    assert probe[(4, "auroc")] > 0.95 and probe[(4, "onset_auroc")] > 0.95  # sees the onset coming
    assert probe[(-4, "auroc")] < 0.8  # the past label is not what was planted


def test_baselines_persistence_and_token_identity():
    tokens = token_frame()
    in_bt = tokens["in_backtracking"].to_numpy()
    X = np.random.default_rng(2).normal(size=(len(tokens), 4))
    result = run_lag_slice(tokens, X, 0, FAST)
    rows = result.metrics.set_index(["lag", "probe", "metric"])["value"]
    assert (0, "persistence", "auroc") not in rows.index  # at lag 0 persistence IS the label
    test_chains = {chain for chain, split in result.split.items() if split == "test"}
    source, target = lag_pairs(tokens, 4)
    test = tokens["chain_id"].to_numpy()[source]
    keep = np.isin(test, list(test_chains))
    assert rows[(4, "persistence", "auroc")] == pytest.approx(auroc(in_bt[target][keep], in_bt[source][keep].astype(float)))
    # persistence cannot see an onset coming (the label at t is 0 just before it)
    assert rows[(4, "persistence", "onset_auroc")] < 0.55
    # token identity: the train rate per token id, shrunk toward the prevalence; unseen ids get the prevalence
    scores = rate_by_key(np.array([1, 1, 2, 2]), np.array([1, 0, 0, 0]), np.array([1, 2, 3]), prior=1.0)
    assert scores == pytest.approx([(1 + 0.25) / 3, 0.25 / 3, 0.25])


def test_token_identity_baseline_finds_a_label_written_in_the_token():
    tokens = token_frame()
    source, target = lag_pairs(tokens, 4)
    ids = tokens["token_id"].to_numpy().copy()
    ids[source] = np.where(tokens["in_backtracking"].to_numpy()[target], 999, ids[source])
    tokens["token_id"] = ids
    result = run_lag_slice(tokens, np.random.default_rng(3).normal(size=(len(tokens), 4)), 0, FAST)
    rows = result.metrics.set_index(["lag", "probe", "metric"])["value"]
    assert rows[(4, "token_identity", "auroc")] > 0.95 and rows[(-4, "token_identity", "auroc")] < 0.8


def test_splits_by_chain_and_margins_have_intervals():
    tokens = token_frame()
    X = np.random.default_rng(4).normal(size=(len(tokens), 4))
    result = run_lag_slice(tokens, X, 7, FAST)
    assert set(result.split.values()) == {"train", "val", "test"}
    assert set(result.split) == set(tokens["chain_id"])
    margins = result.margins
    assert {"token_identity", "persistence", "position", "lag0_probe", "best_baseline"} <= set(margins["baseline"])
    assert (margins["ci_low"] <= margins["ci_high"]).all() and (margins["n_valid_resamples"] > 0).all()
    assert run_lag_slice(tokens, X, 8, FAST).split != result.split  # the seed picks the split


def test_f1_threshold_is_the_best_on_the_given_rows():
    labels, scores = np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.2, 0.8, 0.7, 0.75])
    threshold = best_f1_threshold(labels, scores)
    assert threshold == pytest.approx(0.7) and f1_at(labels, scores, threshold) == pytest.approx(0.8)


def test_a_split_without_positives_is_a_clear_error():
    tokens = token_frame(4, 60)
    with pytest.raises(ValueError, match="no backtracking token"):
        run_lag_slice(tokens.assign(in_backtracking=False), np.zeros((len(tokens), 2)), 0, FAST)
