"""``ta-platform check-data``: per-trace report, exit 0 only when all traces pass, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from ta_platform.rollouts.generator import generate_dataset
from ta_platform_tests.e2e import project_env, run_cli
from ta_platform_tests.realdata import MATH_ROLLOUTS, requires_realdata


@requires_realdata
def test_real_traces_all_pass(tmp_path):
    result = run_cli(["ta-platform", "check-data", str(MATH_ROLLOUTS), "--json"], project_env(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 24
    assert all(r["aligned"] == r["sentences"] and r["anchors"] > 0 and not r["faults"] for r in rows)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "clean"
    generate_dataset(root, seed=3, n_problems=3)
    return root


def _first_trace_dir(root):
    return sorted(root.glob("*/*/correct_base_solution/problem_*"))[0]


@pytest.mark.parametrize("fault, expected", [
    ("malformed", "malformed JSON"),
    ("missing_file", "problem.json"),
    ("unaligned", "does not occur in full_cot"),
])
def test_a_broken_trace_is_named_with_its_file_and_the_exit_status_is_one(tmp_path, dataset, fault, expected):
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    trace = _first_trace_dir(root)
    if fault == "malformed":
        (trace / "chunks_labeled.json").write_text('[{"chunk": "oops"')
    elif fault == "missing_file":
        (trace / "problem.json").unlink()
    else:
        chunks = json.loads((trace / "chunks_labeled.json").read_text())
        chunks[1]["chunk"] = "A sentence that the model never wrote."
        (trace / "chunks_labeled.json").write_text(json.dumps(chunks))
    result = run_cli(["ta-platform", "check-data", str(root)], project_env(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    faulty = [line for line in result.stdout.splitlines() if "FAULT" in line]
    assert len(faulty) == 1 and trace.name in faulty[0]
    assert expected in result.stdout and str(trace) in result.stdout
    assert result.stdout.count(" ok") == 11  # every other trace still checked and passing


def test_a_folder_that_is_not_a_dataset_exits_one_with_a_message(tmp_path):
    result = run_cli(["ta-platform", "check-data", str(tmp_path)], project_env(tmp_path))
    assert result.returncode == 1 and "no traces found" in result.stderr and "Traceback" not in result.stderr
