"""Slice tripwires: no false failure on sound data, and each one fails on the fault it names."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from ta_platform.extraction.extractor import TraceInput, span_text_sha1
from ta_platform.probing import tripwires
from ta_platform.probing.config import ProbeConfig
from ta_platform.probing.synthetic import make_synthetic_probe_data
from ta_platform.probing.tripwires import (
    SLICE_TRIPWIRES,
    misaligned_rows,
    planted_signal,
    random_label_null,
    run_tripwires,
    split_leakage,
    trace_rows_independent,
)

pytestmark = pytest.mark.usefixtures("single_blas_thread")

FAST = ProbeConfig(null_permutations=3)  # small K keeps the loops fast; the band widens with 1/sqrt(K)


@pytest.fixture
def single_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _slice(seed, setting="correct", dims=128, n_problems=24):
    frame, X = make_synthetic_probe_data(seed, dims=dims, n_problems=n_problems)
    keep = (frame["setting"] == setting).to_numpy()
    return frame[keep].reset_index(drop=True), X[keep]


def _hashes(frame):
    """What the extractor records per row and what the tripwire recomputes: the sentence text's SHA-1."""
    trace = TraceInput("t", "\n".join(frame["text"]), [])
    starts = np.cumsum([0] + [len(t) + 1 for t in frame["text"]])[:-1]
    spans = [(int(a), int(a) + len(t)) for a, t in zip(starts, frame["text"], strict=True)]
    return span_text_sha1(dataclasses.replace(trace, char_spans=spans))


def _index(frame):
    return frame[["trace_key", "chunk_idx"]].assign(text_sha1=_hashes(frame))


def _expected(frame):
    return _index(frame)


def _by_name(results):
    assert len({r.name for r in results}) == len(results)
    return {r.name: r for r in results}


@pytest.fixture(scope="module")
def sound():
    return _slice(0)


@pytest.mark.parametrize("seed", range(20))
def test_no_false_failure_on_sound_data(seed):
    frame, X = _slice(seed, setting=("correct", "incorrect")[seed % 2], dims=(64, 128, 256)[seed % 3])
    results = _by_name(run_tripwires(frame, X, seed, FAST, index=_index(frame), expected_sha1=_expected(frame)))
    assert set(results) == set(SLICE_TRIPWIRES)
    failures = {name: (r.reason_code, r.detail) for name, r in results.items() if not r.passed}
    assert failures == {}


@pytest.mark.parametrize("seed", range(3))
def test_shuffled_labels_fail_signal_beats_null(seed):
    frame, X = _slice(seed)
    rng = np.random.default_rng(seed)
    labelled = frame["in_label_set"].to_numpy()
    anchors = frame["anchor"].to_numpy().copy()
    anchors[labelled] = rng.permutation(anchors[labelled])
    results = _by_name(random_label_null(frame.assign(anchor=anchors), X, seed, FAST))
    assert results["signal_beats_null"].reason_code == "no_signal_beyond_position"
    assert results["permutation_null"].passed  # the null itself is still sound


def _position_only(seed):
    """Labels that are pure position: anchors far likelier early in a trace, otherwise random; the
    activations encode position (an appended column)."""
    frame, X = _slice(seed)
    position = frame["rel_position"].to_numpy()
    X = np.hstack([X, position[:, None].astype(np.float32)])
    rate = np.where(position < 0.2, 0.5, 0.03)
    early = (np.random.default_rng(seed).random(len(frame)) < rate) & frame["in_label_set"].to_numpy()
    return frame.assign(anchor=early.astype(int)), X


def test_signal_beats_null_asks_beyond_position():
    """On pure-position labels a null that keeps position learns what the real probe learns: a 95%
    check flags such a slice only by chance (at most 2 of these 4 seeds). A null that ignores position
    (labels permuted across a whole problem: one position bin) flags every one of them."""
    keeping, ignoring = [], []
    for seed in (1, 2, 3, 4):
        frame, X = _position_only(seed)
        results = _by_name(random_label_null(frame, X, seed, FAST))
        signal = results["signal_beats_null"]
        assert "over position_baseline" in signal.detail and "over text_baseline" in signal.detail
        assert results["permutation_null"].passed
        keeping.append(signal.passed)
        blind = dataclasses.replace(FAST, null_position_bins=1)
        ignoring.append(_by_name(random_label_null(frame, X, seed, blind))["signal_beats_null"].passed)
    assert sum(keeping) <= 2 and all(ignoring), (keeping, ignoring)
    # while content signal (the synthetic default) does beat it, and the margins say by how much
    frame, X = _slice(2)
    signal = _by_name(random_label_null(frame, X, 2, FAST))["signal_beats_null"]
    assert signal.passed and signal.metrics["margin_over_position_baseline"] > 0


def test_misaligned_rows_fail_on_keys_or_sentence_text(sound):
    frame, X = sound
    index, expected = _index(frame), _expected(frame)
    assert misaligned_rows(frame, index, expected).passed
    # keys assigned to the wrong rows: the text the extractor hashed for row i is another sentence
    swapped = index.copy()
    swapped.loc[[3, 4], "chunk_idx"] = swapped.loc[[4, 3], "chunk_idx"].to_numpy()
    relabelled = frame.copy()
    relabelled.loc[[3, 4], "chunk_idx"] = relabelled.loc[[4, 3], "chunk_idx"].to_numpy()
    result = misaligned_rows(relabelled, swapped, expected)
    assert result.reason_code == "misaligned" and result.metrics["n_text_mismatches"] == 2
    assert "row 3" in result.detail and "different sentence text" in result.detail
    # spans re-made after extraction (same keys, other sentence)
    moved = expected.assign(text_sha1=expected["text_sha1"].shift(1, fill_value="x"))
    assert misaligned_rows(frame, index, moved).metrics["n_misaligned_rows"] == len(frame)
    assert misaligned_rows(frame, index.iloc[:-1], expected).reason_code == "misaligned"
    assert misaligned_rows(frame, index.drop(columns="text_sha1"), expected).reason_code == "no_text_hash"


def test_split_leakage_reads_problem_identity_not_ids():
    rows = [(0, "m/L1/correct", "1", "k1", "train"), (0, "m/L1/correct", "2", "k2", "test"),
            (1, "m/L1/correct", "1", "k1", "fold0"), (1, "m/L1/incorrect", "1", "k1", "fold0")]
    frame = pd.DataFrame(rows, columns=["seed", "scope", "problem_id", "problem_key", "split"])
    assert split_leakage(frame).passed
    # problem 3 is problem 1 under another id (a duplicate), filed in test while 1 is in train
    leaked = pd.concat([frame, pd.DataFrame([(0, "m/L1/correct", "3", "k1", "test")], columns=frame.columns)])
    result = split_leakage(leaked)
    assert result.reason_code == "problem_leak" and result.metrics["n_leaking"] == 1
    assert "problem 1 in train" in result.detail and "problem 3 in test" in result.detail
    # the same problem in two folds of one seed (slices that disagree) leaks too
    disagree = pd.concat([frame, pd.DataFrame([(1, "m/L2/correct", "1", "k1", "fold3")], columns=frame.columns)])
    assert split_leakage(disagree).reason_code == "problem_leak"
    assert split_leakage(frame.iloc[:0]).reason_code == "no_recorded_split"


def test_trace_rows_independent_names_duplicate_and_collapsed_rows(sound):
    frame, X = sound
    chosen = trace_rows_independent(frame, X, 0, FAST)
    assert chosen.passed and chosen.metrics["pr_auc"] == 1.0 and chosen.metrics["auroc"] == 1.0
    rows = np.flatnonzero((frame["trace_key"] == chosen.metrics["trace_key"]).to_numpy())
    duplicated = X.copy()
    duplicated[rows[5]] = duplicated[rows[2]]
    result = trace_rows_independent(frame, duplicated, 0, FAST)
    assert result.reason_code == "rank_deficient"
    assert f"{chosen.metrics['trace_key']}#2" in result.detail and "#5" in result.detail
    # a layer collapsed onto 8 directions: no duplicate, no constant column, still rank deficient
    collapsed = (X @ np.random.default_rng(0).normal(size=(X.shape[1], 8)) @ np.random.default_rng(1).normal(
        size=(8, X.shape[1]))).astype(np.float32)
    result = trace_rows_independent(frame, collapsed, 0, FAST)
    assert result.reason_code == "rank_deficient" and "linearly dependent" in result.detail


def test_trace_rows_independent_is_deterministic_and_cuts_long_traces():
    frame, X = _slice(2, dims=16)  # every trace has > 17 sentences: rows are cut to dims + 1
    first = trace_rows_independent(frame, X, 0, FAST)
    assert first.passed and first.metrics["n_rows"] == 17 and first.metrics["n_positive"] >= 1
    assert trace_rows_independent(frame, X, 0, FAST) == first


def test_fault_reasons_without_crashing(sound):
    frame, X = sound
    bad = X.copy()
    bad[4, 2] = np.inf
    results = _by_name(run_tripwires(frame, bad, 0, FAST, index=_index(frame), expected_sha1=_expected(frame)))
    for name in ("trace_rows_independent", "permutation_null", "signal_beats_null", "planted_signal"):
        assert results[name].reason_code == "non_finite", name
    assert results["misaligned_rows"].passed
    assert trace_rows_independent(frame.assign(anchor=0), X, 0, FAST).reason_code == "single_class"


def test_planted_signal_fails_on_an_off_by_one_between_labels_and_scores(sound, monkeypatch):
    """The fault the plant exists for: labels and scores one row apart somewhere between the frame and
    the metrics. Sound: recovered. With the suite's evaluated labels shifted by one row: not recovered."""
    from ta_platform.probing import suite as suite_module

    frame, X = sound
    assert planted_signal(frame, X, 0, FAST).passed
    original = suite_module._metric_rows

    def shifted(frame, labels, scores, folds, seed, config):
        return original(frame, np.roll(labels, 1), scores, folds, seed, config)

    monkeypatch.setattr(suite_module, "_metric_rows", shifted)
    result = planted_signal(frame, X, 0, FAST)
    assert result.reason_code == "planted_signal_not_recovered"
    assert result.metrics["n_planted_columns"] == int(np.ceil(np.sqrt(X.shape[1])))


def test_planted_signal_catches_rows_reordered_inside_the_suite(sound, monkeypatch):
    """A suite that sorts its training rows but not their labels (a row-order bug) loses the plant."""
    from ta_platform.probing import suite as suite_module

    frame, X = sound
    assert planted_signal(frame, X, 0, FAST).passed
    original = suite_module.labelled_inputs

    def reordered(frame, X):
        inputs, labels = original(frame, X)
        return inputs, labels[np.argsort(inputs.frame["trace_key"].to_numpy()[::-1], kind="stable")]

    monkeypatch.setattr(suite_module, "labelled_inputs", reordered)
    assert planted_signal(frame, X, 0, FAST).reason_code == "planted_signal_not_recovered"


def test_permutation_null_fails_when_the_evaluated_rows_leak_into_training(sound, monkeypatch):
    """A real pipeline fault, through the real suite: every model also trains on the rows it is scored on
    (a split whose test problems leak into training). Probes then fit their own permuted test labels, and
    random labels look learnable."""
    frame, X = sound
    assert _by_name(random_label_null(frame, X, 0, FAST))["permutation_null"].passed
    leak_evaluated_rows_into_training(monkeypatch)
    result = _by_name(random_label_null(frame, X, 0, FAST))["permutation_null"]
    assert result.reason_code == "null_learnable", result.detail
    assert result.metrics["null_mean_pr_auc"] > result.metrics["null_band_upper"]


def leak_evaluated_rows_into_training(monkeypatch) -> None:
    """Plant split leakage in ``probing.suite``: each fit unit's training rows include its scored rows."""
    from ta_platform.probing import suite as suite_module

    original = suite_module.fit_units

    def leaky(inputs, seed, config, assignment):
        units, split, row_split = original(inputs, seed, config, assignment)
        return [dataclasses.replace(unit, train=unit.train | unit.scored) for unit in units], split, row_split

    monkeypatch.setattr(suite_module, "fit_units", leaky)


def test_one_crashing_check_hides_nothing(sound):
    frame, X = sound
    broken = frame.drop(columns=["text"])  # the suite's text baseline needs text
    results = _by_name(run_tripwires(broken, X, 0, FAST, index=_index(frame), expected_sha1=_expected(frame)))
    assert set(results) == set(SLICE_TRIPWIRES)
    assert results["signal_beats_null"].reason_code == "error" and results["planted_signal"].reason_code == "error"
    assert "lacks columns ['text']" in results["planted_signal"].detail
    assert results["misaligned_rows"].passed  # evaluated despite the others' crash


@pytest.mark.parametrize("cv_mode", ["holdout", "leave_problems_out"])
def test_the_batched_null_equals_the_permute_and_fit_loop(cv_mode, monkeypatch):
    """``random_label_null`` fits every permutation as heads of one engine call and replays each
    reference's random draws from a saved generator state. It must give what the loop it replaced gives
    (permute, fit through run_probe_suite with the real run's C, simulate the reference, one generator):
    null PR-AUCs within the engine's agreement tolerance and the SAME reference draws, up to the fits'
    rounding (a generator that drifted would give independent draws, ~2 sd apart)."""
    frame, X = _slice(2, dims=96, n_problems=12)
    config = dataclasses.replace(FAST, cv_mode=cv_mode, n_folds=3)
    seed = 2
    captured = []
    original_reference = tripwires._within_group_reference
    monkeypatch.setattr(tripwires, "_within_group_reference",
                        lambda *args, **kwargs: captured.append(original_reference(*args, **kwargs)) or captured[-1])
    got = random_label_null(frame, X, seed, config)[0].metrics

    linear = tripwires._linear_only(config)
    real = tripwires.run_probe_suite(frame, X, seed, dataclasses.replace(linear, probes=("linear_probe",
                                                                                       *tripwires.NULL_BASELINES)))
    chosen = {(row.probe, str(row.fold)): float(row.value) for row in real.selection.itertuples()
              if row.probe == "linear_probe"}
    rng = np.random.default_rng([seed, 7919])
    groups = tripwires.position_groups(frame, config.null_position_bins)
    loop_scores, loop_draws = [], []
    for _ in range(config.null_permutations):
        permuted = tripwires._permute_within_groups(frame, groups, rng)
        run = tripwires.run_probe_suite(permuted, X, seed, linear, assignment=real.split, fixed=chosen)
        loop_scores.append(run.metric("linear_probe", "pr_auc"))
        labels, scores, evaluated, folds, problems = tripwires._evaluated_rows(permuted, run, groups)
        loop_draws.append(original_reference(labels, scores, evaluated, config.null_reference_draws, rng, folds,
                                             problems))
    np.testing.assert_allclose(got["null_scores"], loop_scores, atol=0.005)
    assert len(captured) == config.null_permutations
    for batched, loop in zip(captured, loop_draws, strict=True):
        # the same draws: differences of the fits' rounding (~1e-4), not of independent draws (~2 sd)
        assert np.quantile(np.abs(batched - loop), 0.9) <= 0.05 * np.std(loop)
    assert abs(got["reference_mean_pr_auc"] - np.mean([d.mean() for d in loop_draws])) <= 0.005


def test_a_real_run_passed_in_gives_the_null_it_would_have_run(sound):
    """A study that already ran the linear probe and both baselines hands that run to the null (function_tags'
    seed 0): the same verdicts and numbers; a run without the baselines is refused, naming them."""
    frame, X = sound
    config = dataclasses.replace(FAST, bootstrap_resamples=0, probes=("linear_probe", *tripwires.NULL_BASELINES))
    real = tripwires.run_probe_suite(frame, X, 0, config)
    given = random_label_null(frame, X, 0, FAST, real_run=real)
    alone = random_label_null(frame, X, 0, FAST)
    assert [r.passed for r in given] == [r.passed for r in alone]
    np.testing.assert_allclose(given[0].metrics["null_scores"], alone[0].metrics["null_scores"], atol=1e-12)
    assert given[0].metrics["real_pr_auc"] == alone[0].metrics["real_pr_auc"]
    linear_only = tripwires.run_probe_suite(frame, X, 0, dataclasses.replace(config, probes=("linear_probe",)))
    with pytest.raises(ValueError, match="position_baseline"):
        random_label_null(frame, X, 0, FAST, real_run=linear_only)
