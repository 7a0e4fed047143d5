"""The anchors study on very small real datasets: 4 and 3 real problems, from an empty storage.

What broke (issue 20, item 7): the main job on a real math-rollouts folder of 4 problems crashed in
the probes stage (``ValueError: Found array with 0 sample(s)``, leave-problems-out leaving a fold
without training rows), and with 3 problems no fold had an inner validation problem, so nothing
could be chosen. Here every stage runs on 4 and on 3 real problems (both trace models, both
settings), the gate passes and the report states the scheme (one fold per problem, each fold's model
trained on the others, its choices made on one inner validation problem). Below the minimum
(3 problems) the probes stop before any fit with a message naming it.

The 4-problem project also plants item 6 of the issue: the labels re-made with a new anchor
percentile, the seed trained on the old labels is excluded from the summary and named by the
``provenance_matches_activations`` check. One random-weight model at one layer reads both trace
folders (the cheapest graph that runs every stage).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ta_platform.anchors.labels import AnchorLabelConfig, build_label_table
from ta_platform.probing.suite import MIN_PROBLEMS, TooFewProblems, run_probe_suite
from ta_platform.rollouts.source_base import LocalRolloutSource
from ta_platform.rollouts.sources import load_traces
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import REPO, project_env, run_cli
from ta_platform_tests.realdata import MATH_ROLLOUTS, requires_realdata

pytestmark = [requires_realdata]

REGISTRY = """
[models.tiny-qwen2]
source = "tiny"
arch = "qwen2"
revision = "tiny-v1"
num_layers = 8
layers = [0.5]
dtype = "auto"
trace_models = ["deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b"]
"""


def real_subset(destination: Path, n_problems: int) -> Path:
    """The first ``n_problems`` problems (by id) of every ``<model>/<temperature>/<split>`` folder."""
    problems = sorted({p.name for p in MATH_ROLLOUTS.glob("*/*/*/problem_*")},
                      key=lambda name: int(name.removeprefix("problem_")))[:n_problems]
    for split_dir in sorted(MATH_ROLLOUTS.glob("*/*/*")):
        for name in problems:
            if (split_dir / name).is_dir():
                shutil.copytree(split_dir / name, destination / split_dir.relative_to(MATH_ROLLOUTS) / name)
    return destination


# 4 problems in CI (the reported crash, and the stale-label plant); 3 in the release battery (TA_RELEASE_TESTS=1)
@pytest.fixture(scope="module", params=[4, pytest.param(3, marks=pytest.mark.release)], ids=["4_problems", "3_problems"])
def small_project(request, tmp_path_factory):
    n_problems = request.param
    data = real_subset(tmp_path_factory.mktemp(f"rollouts_{n_problems}"), n_problems)
    storage = tmp_path_factory.mktemp(f"storage_{n_problems}")
    registry = tmp_path_factory.mktemp("registry") / "models.toml"
    registry.write_text(REGISTRY)
    env = project_env(storage, TA_DATA_SOURCE=str(data), TA_MODEL_REGISTRY=str(registry))
    result = run_cli(["ta-platform", "materialize", "--study", "anchors", "--seeds", "0...0"], env, timeout=1800)
    return n_problems, storage, env, result


@pytest.mark.slow
def test_every_stage_runs_the_gate_passes_and_the_report_states_the_scheme(small_project):
    n_problems, storage, _, result = small_project
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-6000:]
    assert result.returncode == 0, output[-6000:]
    assert "[gate] study 'anchors': gate passes" in result.stdout
    summary = MetadataStore(storage / "metadata.duckdb").read_table("scaling_summary")
    assert set(summary["setting"]) == {"correct", "incorrect"}
    assert (summary["scheme"] == f"leave-problems-out ({n_problems} folds)").all(), summary["scheme"].tolist()
    assert (summary["n_test_problems"] == n_problems).all()
    assert (summary["selected_on"] == "inner validation split of each fold").all()
    assert summary[["probe_pr_auc", "margin_position", "ci_low_position", "ci_high_position"]].notna().all().all()
    report = (storage / "reports" / "scaling_summary.md").read_text()
    assert f"leave-problems-out ({n_problems} folds)" in report and "**Release gate: PASS" in report


@pytest.mark.slow
def test_a_new_anchor_percentile_excludes_the_old_seed_and_the_check_names_it(small_project):
    n_problems, storage, env, result = small_project
    if n_problems != 4:
        pytest.skip("planted once, on the 4-problem project")
    assert result.returncode == 0
    relabel = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "ta_platform.definitions",
         "--select", "sentence_labels", "--config-json",
         json.dumps({"resources": {"settings": {"config": {"anchor_percentile": 80.0}}}})],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert relabel.returncode == 0, relabel.stderr[-4000:]
    probe = subprocess.run([sys.executable, "-c", STALE_PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert probe.returncode == 0, probe.stderr[-4000:]
    verdict = json.loads(probe.stdout.strip().splitlines()[-1])
    named = "seed 0: trained on other labels (label_config.percentile 90.0 -> 80.0)"
    assert verdict["seeds"] == [] and verdict["excluded"] == [named]  # the summary no longer averages it in
    assert verdict["check_passed"] is False and verdict["stale_labels"] == [named]


# Run in the project's environment: what the summary would average, and the blocking check's verdict.
STALE_PROBE = """
import json
from pathlib import Path
import pandas as pd
from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.probes.assets import probes_dir
from ta_platform.defs.probes.checks import provenance_matches_activations
from ta_platform.defs.probes.settings import ProbeSettings
from ta_platform.store import artifacts
from ta_platform.studies.anchor_probes import config_hash
from ta_platform.studies.anchor_summary import load_current_seeds

recorded = json.loads((probes_dir() / "seed_0" / "provenance.json").read_text())
results = load_current_seeds(probes_dir(), config_hash(ProbeSettings().probe_config()),
                             recorded["activation_fingerprints"],
                             pd.read_parquet(artifacts.thought_anchor_file(artifacts.LABELS)))
check = provenance_matches_activations(probe_settings=ProbeSettings(), compute=ComputeResource())
print(json.dumps({"seeds": results.seeds, "excluded": results.excluded, "check_passed": check.passed,
                  "stale_labels": check.metadata["stale_labels"].data}))
"""


def test_below_the_minimum_the_probes_stop_naming_it(tmp_path):
    """Two real problems: no fold can keep a problem to train on and another to validate on."""
    from ta_platform.studies.anchor_probes import run_seed

    traces, faults = load_traces(LocalRolloutSource(real_subset(tmp_path / "rollouts", 2)))
    assert not faults
    labels = build_label_table(traces, AnchorLabelConfig(), {t.problem_id: "train" for t in traces})
    frame = labels[labels["model"] == "deepseek-r1-distill-qwen-14b"].reset_index(drop=True)
    X = np.random.default_rng(0).normal(size=(len(frame), 8)).astype(np.float32)
    with pytest.raises(TooFewProblems, match=f"holds 2 problem\\(s\\); the probes need at least {MIN_PROBLEMS}"):
        run_probe_suite(frame, X, 0)
    with pytest.raises(TooFewProblems, match="the labelled dataset holds 2 problem"):
        run_seed(0, iter(()), None, tmp_path / "probes", {}, labels["problem_id"])  # stops before any slice
    assert not (tmp_path / "probes").exists()


def test_a_slice_that_keeps_one_problem_stops_naming_the_slice(tmp_path):
    """The crash as it was reproduced: 4 real problems in the dataset, a slice (a model whose other traces
    were over its context) keeping one of them; its fold had no training row (``Found array with 0
    sample(s)`` from sklearn). Now the slice and the minimum are named, nothing is written."""
    from ta_platform.probing.config import ProbeConfig
    from ta_platform.studies.activation_slices import ProbeSlice
    from ta_platform.studies.anchor_probes import run_seed

    traces, _ = load_traces(LocalRolloutSource(real_subset(tmp_path / "rollouts", 4)))
    labels = build_label_table(traces, AnchorLabelConfig(), {t.problem_id: "train" for t in traces})
    kept = labels[(labels["model"] == "deepseek-r1-distill-qwen-14b") & (labels["setting"] == "correct")]
    kept = kept[kept["problem_id"] == kept["problem_id"].iloc[0]].reset_index(drop=True)
    X = np.random.default_rng(0).normal(size=(len(kept), 8)).astype(np.float32)
    piece = ProbeSlice("m", "L4", "correct", kept, X, kept[["trace_key", "chunk_idx"]], {})
    with pytest.raises(TooFewProblems, match=r"slice m/L4/correct: this slice holds 1 problem\(s\); the probes "
                                             r"need at least 3"):
        run_seed(0, [piece], ProbeConfig(), tmp_path / "probes", {}, labels["problem_id"], log=lambda line: None)
    assert not (tmp_path / "probes").exists()


def test_three_real_problems_give_every_fold_an_inner_validation_problem(tmp_path):
    """The case that had no validation at all: each fold trains on one problem and chooses on another."""
    traces, _ = load_traces(LocalRolloutSource(real_subset(tmp_path / "rollouts", 3)))
    labels = build_label_table(traces, AnchorLabelConfig(), {t.problem_id: "train" for t in traces})
    frame = labels[(labels["model"] == "deepseek-r1-distill-qwen-14b") & (labels["setting"] == "correct")]
    frame = frame.reset_index(drop=True)
    X = np.random.default_rng(0).normal(size=(len(frame), 8)).astype(np.float32)
    from ta_platform.probing.config import ProbeConfig

    result = run_probe_suite(frame, X, 0, ProbeConfig(probes=("position_baseline", "linear_probe"),
                                                      bootstrap_resamples=50))
    assert sorted(set(result.split.values())) == ["fold0", "fold1", "fold2"]
    assert result.selection["val_pr_auc"].notna().all(), result.selection  # a choice made on validation
    assert pd.Series(result.predictions["score"]).notna().all()
