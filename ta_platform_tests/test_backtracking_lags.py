"""The lag convention, the baselines, the recorded split and the lag probe on planted data (no model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ta_platform.chains.baselines import position_bins, rate_by_key
from ta_platform.chains.lag_probes import PROBE, LagConfig, run_lag_slice
from ta_platform.chains.lags import lag_pairs
from ta_platform.chains.splits import DatasetSplit, dataset_split
from ta_platform.probing.metrics import auroc
from ta_platform.probing.splits import unit_identity, unit_split
from ta_platform.probing.thresholds import best_f1_threshold, f1_at


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


def chains_of(tokens: pd.DataFrame, problems: dict[str, str] | None = None) -> pd.DataFrame:
    """A chains table (chain_id, problem) for ``tokens``: one problem per chain unless ``problems`` maps some."""
    ids = list(dict.fromkeys(tokens["chain_id"].astype(str)))
    problems = problems or {}
    return pd.DataFrame({"chain_id": ids, "problem": [problems.get(c, f"Problem statement of {c}.") for c in ids]})


def split_of(tokens: pd.DataFrame, seed: int, config: LagConfig = FAST) -> DatasetSplit:
    """The seed's dataset-wide split of the chains in ``tokens`` (what the study records before the slices)."""
    return dataset_split(chains_of(tokens), seed, config.fractions)


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
    result = run_lag_slice(tokens, X, split_of(tokens, 0), FAST)
    probe = result.metrics[(result.metrics["probe"] == "linear_probe")].set_index(["lag", "metric"])["value"]
    assert probe[(4, "auroc")] > 0.95 and probe[(4, "onset_auroc")] > 0.95  # sees the onset coming
    assert probe[(-4, "auroc")] < 0.8  # the past label is not what was planted


def test_baselines_persistence_and_token_identity():
    tokens = token_frame()
    in_bt = tokens["in_backtracking"].to_numpy()
    X = np.random.default_rng(2).normal(size=(len(tokens), 4))
    result = run_lag_slice(tokens, X, split_of(tokens, 0), FAST)
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
    result = run_lag_slice(tokens, np.random.default_rng(3).normal(size=(len(tokens), 4)), split_of(tokens, 0), FAST)
    rows = result.metrics.set_index(["lag", "probe", "metric"])["value"]
    assert rows[(4, "token_identity", "auroc")] > 0.95 and rows[(-4, "token_identity", "auroc")] < 0.8


def test_the_split_is_by_problem_and_the_margins_are_the_test_rows_auroc_differences():
    tokens = token_frame()
    # chains c000..c005 are three problems of two chains each (e.g. two samples of one question)
    shared = {f"c{c:03d}": f"Shared problem {c // 2}." for c in range(6)}
    chains = chains_of(tokens, shared)
    split = dataset_split(chains, 7, FAST.fractions)
    units = {row.chain_id: unit_identity(row.problem) for row in chains.itertuples()}
    by_unit = unit_split(sorted(set(units.values())), 7, FAST.fractions)
    assert dict(split.split) == {chain: by_unit[unit] for chain, unit in units.items()}  # exactly the unit split
    for c in (0, 2, 4):
        assert split.split[f"c{c:03d}"] == split.split[f"c{c + 1:03d}"]  # chains of one problem land together
    X = np.random.default_rng(4).normal(size=(len(tokens), 4))
    X[:, 0] += tokens["in_backtracking"].to_numpy()
    result = run_lag_slice(tokens, X, split, FAST)
    assert result.split == dict(split.split)  # the slice used the recorded split, nothing else
    scores = result.test_scores
    assert set(scores["chain_id"]) == {c for c, part in split.split.items() if part == "test"}
    assert (scores["unit_id"] == scores["chain_id"].map(units)).all()
    margins = result.margins.set_index(["lag", "target", "baseline"]).sort_index()
    for (lag, target, baseline), row in margins.iterrows():
        rows = scores[scores["lag"] == lag]
        if target == "onset":
            rows = rows[rows["onset"] | ~rows["span"]]
        label = rows["span" if target == "span" else "onset"].to_numpy()
        expected = auroc(label, rows[PROBE].to_numpy()) - auroc(label, rows[row["chosen"]].to_numpy())
        assert row["margin"] == pytest.approx(expected), (lag, target, baseline)
    assert set(margins.loc[(0, "span")].index) == {"token_identity", "position", "best_baseline"}
    assert set(margins.loc[(4, "span")].index) == {"token_identity", "position", "persistence", "lag0_probe",
                                                   "best_baseline"}
    # the best baseline is the one with the highest validation AUROC (val_auroc metric of this slice)
    val = result.metrics[(result.metrics["metric"] == "val_auroc") & (result.metrics["lag"] == 4)
                         & (result.metrics["probe"] != PROBE)].set_index("probe")["value"]
    assert margins.loc[(4, "span", "best_baseline"), "chosen"] == val.idxmax()


def test_f1_is_scored_at_the_threshold_chosen_on_validation():
    """The probe's test F1 uses the validation-best threshold (probing.thresholds), not the test-best one."""
    tokens = token_frame()
    X = np.random.default_rng(6).normal(size=(len(tokens), 4))
    X[:, 0] += tokens["in_backtracking"].to_numpy()
    split = split_of(tokens, 0)
    result = run_lag_slice(tokens, X, split, FAST)
    f1 = result.metrics.set_index(["lag", "probe", "metric"])["value"]
    part = split.splits_of(tokens["chain_id"])
    y = tokens["in_backtracking"].to_numpy()
    for name in ("token_identity", "position"):  # deterministic baselines: recomputable here
        keys = (tokens["token_id"].to_numpy() if name == "token_identity"
                else position_bins(tokens["rel_position"].to_numpy(), FAST.position_bins))
        score = rate_by_key(keys[part == "train"], y[part == "train"], keys, FAST.token_prior)
        threshold = best_f1_threshold(y[part == "val"], score[part == "val"])
        assert f1[(0, name, "f1")] == pytest.approx(f1_at(y[part == "test"], score[part == "test"], threshold))


def test_a_split_without_positives_is_a_clear_error():
    tokens = token_frame(4, 60)
    with pytest.raises(ValueError, match="no backtracking token"):
        run_lag_slice(tokens.assign(in_backtracking=False), np.zeros((len(tokens), 2)), split_of(tokens, 0), FAST)


def test_a_chain_missing_from_the_recorded_split_is_a_clear_error():
    tokens = token_frame(10, 60)
    split = dataset_split(chains_of(tokens).iloc[1:], 0, FAST.fractions)  # c000 was not in the chains table
    with pytest.raises(ValueError, match=r"seed 0: chain\(s\) \['c000'\] have no recorded split"):
        run_lag_slice(tokens, np.zeros((len(tokens), 2)), split, FAST)


def test_permuting_the_test_labels_changes_no_fit_choice_or_validation_score():
    """Selection never sees test: permute the labels of the test chains' tokens (both targets, across all
    test rows) and every fitted coefficient, chosen C, validation score and best-baseline choice stays
    exactly the same, while the test metrics move (the permutation did reach what is reported). Planted
    fault seen failing: C selected on validation + test rows (the coefficients differ)."""
    tokens = token_frame(30, 60)
    X = np.random.default_rng(7).normal(size=(len(tokens), 40))
    X[:, 0] += 0.7 * tokens["in_backtracking"].to_numpy()  # weak enough that the choice of C matters
    split = split_of(tokens, 3)
    config = LagConfig(lags=(-4, 0, 4), c_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    before = run_lag_slice(tokens, X, split, config)
    test = split.splits_of(tokens["chain_id"]) == "test"
    order = np.random.default_rng(0).permutation(np.flatnonzero(test))
    permuted = tokens.copy()
    for column in ("in_backtracking", "backtrack_onset"):
        values = permuted[column].to_numpy().copy()
        values[test] = values[order]
        permuted[column] = values
    after = run_lag_slice(permuted, X, split, config)
    for lag, arrays in before.weights.items():
        assert arrays.keys() == after.weights[lag].keys()
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, after.weights[lag][name], err_msg=f"lag {lag} {name}")
    rows = before.metrics.set_index(["lag", "probe", "metric"])["value"]
    moved = after.metrics.set_index(["lag", "probe", "metric"])["value"]
    chosen = [key for key in rows.index if key[2] in ("val_auroc", "selected_C")]
    assert len(chosen) == 3 + 5 + 5 + 3  # every scorer's val AUROC at lags 0, -4, +4 and the C of each lag
    assert all(rows[key] == moved[key] for key in chosen), [k for k in chosen if rows[k] != moved[k]]
    best = before.margins[before.margins["baseline"] == "best_baseline"]["chosen"].tolist()
    assert best == after.margins[after.margins["baseline"] == "best_baseline"]["chosen"].tolist()
    assert rows[(4, PROBE, "auroc")] != moved[(4, PROBE, "auroc")]  # test metrics did see the permutation
