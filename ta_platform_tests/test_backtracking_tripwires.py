"""Every backtracking check passes on sound data and fails on the real fault it names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ta_platform.chains.lag_probes import LagConfig
from ta_platform.chains.records import build_chain_table
from ta_platform.chains.synthetic import generate_chains
from ta_platform.chains.tripwires import (
    alignment_coverage,
    chains_in_one_split,
    label_prevalence,
    probe_tripwires,
)
from ta_platform.studies.backtracking import split_assignments
from ta_platform_tests.test_backtracking_lags import token_frame
from ta_platform_tests.test_probing_tripwires import leak_evaluated_rows_into_training

CONFIG = LagConfig(null_permutations=3, c_grid=(0.1,))


def test_alignment_coverage_fails_when_records_do_not_align():
    records = generate_chains(20)
    sound = build_chain_table(records)
    assert alignment_coverage(20, sound.chains["coverage"], [], CONFIG).passed
    for record in records[:5]:  # annotations that are no longer the chain's text
        record["annotated_chain"] = record["annotated_chain"].replace("the", "a").replace("Wait", "Hold")
    broken = build_chain_table(records)
    faults = [f"{f.item}: {f.problem}" for f in broken.faults]
    result = alignment_coverage(20, broken.chains["coverage"], faults, CONFIG)
    assert result.reason_code == "too_few_aligned" and "embedded_000" in result.detail


def test_alignment_coverage_fails_when_sections_cover_little_of_the_text():
    result = alignment_coverage(10, [0.6] * 10, [], CONFIG)
    assert result.reason_code == "low_coverage"


def test_label_prevalence_band():
    tokens = token_frame().assign(model="m")
    assert label_prevalence(tokens, CONFIG).passed
    everything = tokens.assign(in_backtracking=True)  # e.g. an end tag never matched: all tokens inside
    assert label_prevalence(everything, CONFIG).reason_code == "prevalence_out_of_band"
    none = tokens.assign(in_backtracking=False, backtrack_onset=False)  # e.g. the label name misspelt
    result = label_prevalence(pd.concat([tokens, none.assign(model="other")]), CONFIG)
    assert not result.passed and "other" in result.detail and "m:" not in result.detail


def _split_case():
    """Four chains, three problems (a and d are two chains of one problem), one recorded split, two slices."""
    chains = pd.DataFrame({"chain_id": ["a", "b", "c", "d"], "content_hash": ["ha", "hb", "hc", "hd"]})
    recorded = pd.DataFrame({"seed": 0, "chain_id": ["a", "b", "c", "d"], "unit_id": ["p1", "p2", "p3", "p1"],
                             "split": ["train", "val", "test", "train"]})
    used = {"a": "train", "b": "val", "c": "test", "d": "train"}
    record = {"seed": 0, "slices": {"m/L1": {"split": dict(used)}, "n/L1": {"split": {"a": "train", "b": "val"}}}}
    return chains, recorded, record


def test_chains_in_one_split_passes_when_every_slice_used_the_recorded_split():
    chains, recorded, record = _split_case()  # n/L1 dropped c and d: not a fault
    result = chains_in_one_split(split_assignments([record], recorded, chains))
    assert result.passed and result.metrics["n_problems"] == 3 and result.metrics["n_slices"] == 2


def test_chains_in_one_split_catches_a_problem_in_two_splits_of_the_record():
    chains, recorded, record = _split_case()
    recorded.loc[recorded["chain_id"] == "d", "split"] = "test"  # the second chain of problem p1 in test
    record["slices"]["m/L1"]["split"]["d"] = "test"
    result = chains_in_one_split(split_assignments([record], recorded, chains))
    assert result.reason_code == "problem_leak" and "a in train" in result.detail and "d in test" in result.detail


def test_chains_in_one_split_catches_a_slice_that_moved_a_chain():
    """What a per-slice split did: a model that dropped chains re-split the rest and moved b to test."""
    chains, recorded, record = _split_case()
    record["slices"]["n/L1"]["split"]["b"] = "test"
    result = chains_in_one_split(split_assignments([record], recorded, chains))
    assert result.reason_code == "split_moved" and "n/L1: b in test (recorded: val)" in result.detail


def test_chains_in_one_split_catches_one_chain_text_under_two_problems():
    chains, recorded, record = _split_case()
    duplicate = chains.assign(content_hash=["ha", "hb", "ha", "hd"])  # c is a's text filed as another problem
    result = chains_in_one_split(split_assignments([record], recorded, duplicate))
    assert result.reason_code == "chain_leak" and "c in test" in result.detail


def test_chains_in_one_split_fails_without_a_recorded_split():
    chains, recorded, record = _split_case()
    result = chains_in_one_split(split_assignments([record], recorded.iloc[0:0], chains))
    assert result.reason_code == "no_recorded_split"
    assert chains_in_one_split(split_assignments([], pd.DataFrame(), chains)).reason_code == "no_recorded_split"


@pytest.fixture(scope="module")
def sound():
    tokens = token_frame(40, 60)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(tokens), 6))
    X[:, 0] += 1.5 * tokens["in_backtracking"].to_numpy()
    return tokens, X


def _by_name(results):
    return {r.name: r for r in results}


def test_probe_tripwires_pass_on_sound_data(sound):
    results = _by_name(probe_tripwires(*sound, 0, CONFIG))
    assert results["permutation_null"].passed and results["planted_signal"].passed
    assert results["signal_beats_null"].passed


def test_planted_signal_fails_when_labels_and_rows_drift_apart(sound, monkeypatch):
    """A row-order bug inside the probe path (labels reordered against their activations)."""
    from ta_platform.probing import suite as suite_module

    original = suite_module.labelled_inputs

    def reordered(frame, X):
        inputs, labels = original(frame, X)
        return inputs, labels[::-1].copy()

    monkeypatch.setattr(suite_module, "labelled_inputs", reordered)
    assert _by_name(probe_tripwires(*sound, 0, CONFIG))["planted_signal"].reason_code == "planted_signal_not_recovered"


def test_planted_signal_fails_when_drowned(sound):
    drowned = dataclasses.replace(CONFIG, planted_noise_sd=50.0)
    assert _by_name(probe_tripwires(*sound, 0, drowned))["planted_signal"].reason_code == "planted_signal_not_recovered"


def test_permutation_null_fails_when_random_labels_look_learnable(sound, monkeypatch):
    """Leakage: every model also trains on the rows it is scored on (test chains in training). With 300
    dims, as activations have (hundreds to thousands), the probes then fit their own permuted test labels."""
    tokens, X = sound
    wide = np.hstack([X, np.random.default_rng(1).normal(size=(len(X), 294))])
    assert _by_name(probe_tripwires(tokens, wide, 0, CONFIG))["permutation_null"].reason_code == "ok"
    leak_evaluated_rows_into_training(monkeypatch)
    assert _by_name(probe_tripwires(tokens, wide, 0, CONFIG))["permutation_null"].reason_code == "null_learnable"


def test_signal_beats_null_fails_on_features_without_signal(sound):
    tokens, X = sound
    noise = np.random.default_rng(5).normal(size=X.shape)
    assert _by_name(probe_tripwires(tokens, noise, 0, CONFIG))["signal_beats_null"].reason_code.startswith("no_signal")


def _summaries(lags=(0, 8), layers=("L2", "L4")):
    """A metric summary (lag stored as float, as SQL leaves it) and its complete margin summary."""
    metric = pd.DataFrame([{"model": "m", "layer": layer, "lag": float(lag), "probe": probe, "metric": "auroc",
                            "mean": 0.8} for layer in layers for lag in lags for probe in ("linear_probe", "position")])
    margins = pd.DataFrame([{"model": "m", "layer": layer, "lag": lag, "target": "span", "baseline": baseline,
                             "metric": "auroc", "margin": 0.1, "ci_low": 0.02, "ci_high": 0.2}
                            for layer in layers for lag in lags for baseline in ("best_baseline", "token_identity")])
    return metric, margins


def test_summary_complete_passes_when_every_scored_cell_has_its_margin_and_interval():
    from ta_platform.chains.tripwires import summary_complete

    metric, margins = _summaries()
    result = summary_complete(metric, margins)
    assert result.passed and result.metrics == {"n_cells": 4, "n_missing": 0}


@pytest.mark.parametrize("fault", ["cell_dropped", "nan_interval", "empty_table", "no_probe_metrics"])
def test_summary_complete_fails_on_a_partial_or_missing_margin_table(fault):
    from ta_platform.chains.tripwires import summary_complete

    metric, margins = _summaries()
    if fault == "cell_dropped":
        margins = margins[~((margins["layer"] == "L4") & (margins["lag"] == 8) & (margins["baseline"] == "best_baseline"))]
    elif fault == "nan_interval":
        margins.loc[(margins["layer"] == "L2") & (margins["lag"] == 0), "ci_high"] = np.nan
    elif fault == "empty_table":
        margins = margins.iloc[0:0]
    else:
        metric = metric[metric["probe"] != "linear_probe"]
    result = summary_complete(metric, margins)
    assert not result.passed
    expected = {"cell_dropped": ("margins_missing", "m/L4/lag+8"), "nan_interval": ("margins_missing", "m/L2/lag+0"),
                "empty_table": ("margins_missing", "4 of 4 cells"),
                "no_probe_metrics": ("no_probe_metrics", "no probe AUROC")}[fault]
    assert result.reason_code == expected[0] and expected[1] in result.detail, result.detail
