"""``ta-platform fit-utilities``: CSV and Parquet round trips, and one-line errors on bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from scipy.stats import spearmanr

from ta_platform.cli.main import main
from ta_platform.preferences.outcomes_io import read_outcomes, read_utilities
from ta_platform.preferences.simulate import simulate_comparisons, simulate_utilities


@pytest.fixture(scope="module")
def outcomes():
    truth = simulate_utilities(60, seed=7)
    data = simulate_comparisons(truth, 2400, n_heldout=300, seed=8)
    return truth, data[["task_a", "task_b", "winner", "heldout"]]


@pytest.mark.parametrize(("source_ext", "out_ext"), [(".csv", ".csv"), (".parquet", ".parquet"), (".csv", ".parquet")])
def test_round_trip(tmp_path, capsys, outcomes, source_ext, out_ext):
    truth, data = outcomes
    source = tmp_path / f"pairs{source_ext}"
    data.to_csv(source, index=False) if source_ext == ".csv" else data.to_parquet(source, index=False)
    out = tmp_path / f"utilities{out_ext}"
    assert main(["fit-utilities", str(source), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_comparisons"] == 2400 and summary["heldout_source"] == "heldout"
    written = pd.read_csv(out) if out_ext == ".csv" else pd.read_parquet(out)
    assert list(written.columns) == ["task_id", "mu", "sigma"]
    utilities = read_utilities(out)
    merged = utilities.merge(truth, on="task_id", suffixes=("", "_true"))
    assert len(merged) == 60
    assert spearmanr(merged["mu"], merged["mu_true"]).statistic >= 0.85
    assert list(tmp_path.glob(".*.tmp")) == []


def _write_bad(tmp_path, ext, row, column, value):
    frame = pd.DataFrame({"task_a": ["t1", "t2", "t3", "t1"], "task_b": ["t2", "t3", "t1", "t3"],
                          "winner": ["a", "b", "a", "b"]}).astype(object)
    frame.loc[row, column] = value
    path = tmp_path / f"bad{ext}"
    frame.to_csv(path, index=False) if ext == ".csv" else frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
@pytest.mark.parametrize(
    ("row", "column", "value", "expected"),
    [(2, "winner", None, "row 3: winner is missing"), (1, "task_b", "t2", "row 2: self-comparison"),
     (3, "winner", "x", "row 4: winner is 'x'"), (0, "task_a", "t99", "row 1: unknown task id 't99'")],
)
def test_bad_input_exits_1_with_one_line(tmp_path, capsys, ext, row, column, value, expected):
    path = _write_bad(tmp_path, ext, row, column, value)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("t1\nt2\nt3\n")
    out = tmp_path / "utilities.csv"
    assert main(["fit-utilities", str(path), "--out", str(out), "--tasks", str(tasks)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith(f"error: {path}: {expected}")
    assert not out.exists() and list(tmp_path.glob(".*.tmp")) == []


def test_unreadable_and_unsupported_files(tmp_path, capsys):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    assert main(["fit-utilities", str(broken), "--out", str(tmp_path / "u.csv")]) == 1
    assert "cannot parse parquet" in capsys.readouterr().err
    assert main(["fit-utilities", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "u.csv")]) == 1
    assert "file not found" in capsys.readouterr().err
    assert main(["fit-utilities", str(broken), "--out", str(tmp_path / "u.json")]) == 1
    assert "unsupported extension" in capsys.readouterr().err


def test_read_outcomes_keeps_string_ids(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("task_a,task_b,winner,heldout\n007,010,A,false\n010,007,b,true\n")
    frame = read_outcomes(path)
    assert frame["task_a"].tolist() == ["007", "010"] and frame["winner"].tolist() == ["a", "b"]
    assert frame["heldout"].tolist() == [False, True]
