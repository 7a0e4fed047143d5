"""The fifth study end to end: ``ta-platform materialize --study function_tags`` from an empty storage builds
the sentence labels and activations it reads, probes one function tag beside position and text baselines,
and passes its gate; its checks fail on the faults they exist to catch, planted into the study's real files."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from ta_platform_tests.study_runs import job_statuses, study_alone, study_gate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    run = study_alone(tmp_path_factory, "function_tags")  # shared with test_studies_standalone.py in one process
    assert run.result.returncode == 0, run.result.stdout[-4000:] + run.result.stderr[-4000:]
    return run.storage, run.env


def test_study_builds_what_it_reads_and_passes_its_gate(study):
    storage, env = study
    # its needs (the sentence labels and activations), then its own stage, each a successful run
    assert job_statuses(storage) == {"data_job": "SUCCESS", "activations_job": "SUCCESS",
                                     "function_tags_job": "SUCCESS"}
    gate = study_gate(env, "function_tags")
    assert gate["passed"] and not gate["missing"], gate
    assert (storage / "reports" / "index.html").exists()


def test_summary_has_both_baselines_and_intervals_around_the_seed_mean(study):
    from ta_platform.common.parquet_io import read_provenance

    storage, _ = study
    summary = pd.read_parquet(storage / "function_tags" / "summary.parquet")
    labels = pd.read_parquet(storage / "thought_anchors" / "sentence_labels.parquet")
    tag = read_provenance(storage / "function_tags" / "summary.parquet")["tag"]
    in_set = labels[labels["in_label_set"]]
    assert tag == in_set["function_tag"].value_counts().idxmax()
    assert set(summary["setting"]) == {"correct", "incorrect"} and (summary["n_seeds"] == 2).all()
    for base in ("position", "text"):
        point, low, high = summary[f"margin_{base}"], summary[f"ci_low_{base}"], summary[f"ci_high_{base}"]
        assert (low <= point).all() and (point <= high).all() and (low < high).all()
        # the margin is the probe's PR-AUC minus the baseline's (both seed-averaged on the same rows)
        np.testing.assert_allclose(point, summary["probe_pr_auc"] - summary[f"{base}_pr_auc"], atol=1e-9)


def test_checks_fail_on_faults_planted_in_the_study_files(study, monkeypatch):
    """The Dagster checks themselves, invoked on the study's real files: sound, then each fault planted."""
    from ta_platform.common.parquet_io import read_provenance, write_parquet
    from ta_platform.defs.function_tags import checks
    storage, _ = study
    monkeypatch.setenv("TA_STORAGE", str(storage))
    labels_path = storage / "thought_anchors" / "sentence_labels.parquet"
    tripwires_path = storage / "function_tags" / "tripwires.parquet"
    backup = storage.parent / "backup"
    backup.mkdir()
    for path in (labels_path, tripwires_path):
        shutil.copy2(path, backup / path.name)
    sound = [checks.function_tag_both_classes(), *(check() for check in checks.tripwire_checks)]
    assert all(result.passed for result in sound), [r.metadata for r in sound]
    try:
        labels = pd.read_parquet(labels_path)
        one_class = labels.assign(function_tag=np.where(labels["setting"] == "incorrect", "other", labels["function_tag"]))
        write_parquet(one_class, labels_path, read_provenance(labels_path))
        result = checks.function_tag_both_classes()
        assert not result.passed and any("incorrect" in item for item in result.metadata["one_class"].value)

        tripwires = pd.read_parquet(tripwires_path)
        planted_failed = tripwires.assign(passed=np.where(tripwires["tripwire"] == "planted_signal", False,
                                                          tripwires["passed"]))
        write_parquet(planted_failed, tripwires_path, read_provenance(tripwires_path))
        results = {check.check_key.name: check() for check in checks.tripwire_checks}
        assert not results["function_tag_planted_signal"].passed and results["function_tag_permutation_null"].passed
    finally:
        for path in (labels_path, tripwires_path):
            shutil.copy2(backup / path.name, path)


def test_the_study_path_recovers_a_planted_tag_and_claims_nothing_on_noise(study):
    """The study's own path (relabel, probes per seed, predictions joined back to labels by sentence key,
    seed-averaged margins with problem-bootstrap intervals) on the real labels with planted activations:
    a column equal to the tag label + noise beats position with an interval above 0; pure noise does not."""
    from ta_platform.function_tags.study import choose_tag, probe_config, run_slices, summarise
    from ta_platform.probing.config import ProbeConfig
    from ta_platform.studies.activation_slices import ProbeSlice

    storage, _ = study
    labels = pd.read_parquet(storage / "thought_anchors" / "sentence_labels.parquet")
    frame = labels[labels["setting"] == "correct"].reset_index(drop=True)
    tag = choose_tag(labels)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(frame), 16))
    planted = noise.copy()
    planted[:, 0] = (frame["function_tag"] == tag).to_numpy(float) + rng.normal(0, 0.1, len(frame))
    config = probe_config(ProbeConfig(), 2)
    for name, X, beats_position in (("planted", planted, True), ("noise", noise, False)):
        piece = ProbeSlice("m", name, "correct", frame, X, frame, {})
        predictions, tripwires = run_slices([piece], tag, [0, 1], config, log=lambda _: None)
        row = summarise(predictions, labels, tag, 200).iloc[0]
        assert (row["ci_low_position"] > 0) == beats_position, (name, row.to_dict())
        assert tripwires.set_index("tripwire").loc["planted_signal", "passed"], tripwires
