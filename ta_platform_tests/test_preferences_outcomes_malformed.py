"""Malformed preference outcomes for ``ta-platform fit-utilities``: each a one-line error, exit 1, nothing written.

Beside the cases of ``test_preferences_cli.py`` (a NaN winner, a self-comparison, an unknown winner or
task id, an unreadable file, an unsupported extension), the ones a lab's files really contain: wrong
types, a missing column, NaN ids, empty files, a column or task id given twice, non-UTF-8 text and a
runaway line. Each error names the file, the record (row or line) and the problem.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ta_platform.cli.main import main
from ta_platform.preferences.outcomes_io import MAX_ID_CHARS, MAX_LINE_BYTES

pytestmark = pytest.mark.fault

GOOD = "task_a,task_b,winner\nt1,t2,a\nt2,t3,b\nt3,t1,a\nt1,t3,b\n"


def csv_bytes(text: str) -> bytes:
    return text.encode("utf-8")


def parquet_of(frame: pd.DataFrame):
    def write(path):
        frame.to_parquet(path, index=False)
    return write


CASES = {
    # name: (extension, content as bytes or a writer, expected message after "error: <file>: ")
    "wrong_type_float_ids": (".parquet", parquet_of(pd.DataFrame(
        {"task_a": [1.5, 2.5], "task_b": [2.5, 3.5], "winner": ["a", "b"]})), "row 1: task_a is 1.5 (float)"),
    "wrong_type_bool_ids": (".parquet", parquet_of(pd.DataFrame(
        {"task_a": ["t1", "t2"], "task_b": [True, False], "winner": ["a", "b"]})), "row 1: task_b is True"),
    "wrong_type_winner": (".parquet", parquet_of(pd.DataFrame(
        {"task_a": ["t1", "t2"], "task_b": ["t2", "t3"], "winner": [1, 0]})), "row 1: winner is 1"),
    "missing_key_column": (".csv", csv_bytes("task_a,task_b\nt1,t2\n"), "missing column(s) ['winner']"),
    "nan_id_csv": (".csv", csv_bytes("task_a,task_b,winner\nt1,t2,a\nt2,,b\n"), "row 2: task_b is missing"),
    "nan_id_parquet": (".parquet", parquet_of(pd.DataFrame(
        {"task_a": ["t1", None], "task_b": ["t2", "t3"], "winner": ["a", "b"]})), "row 2: task_a is missing"),
    "nan_heldout": (".csv", csv_bytes("task_a,task_b,winner,heldout\nt1,t2,a,true\nt2,t3,b,\n"),
                    "row 2: heldout is"),
    "empty_file": (".csv", b"", "cannot parse csv"),
    "header_only": (".csv", csv_bytes("task_a,task_b,winner\n"), "no comparisons in file"),
    "empty_parquet": (".parquet", parquet_of(pd.DataFrame(
        {"task_a": pd.Series([], dtype=str), "task_b": pd.Series([], dtype=str), "winner": pd.Series([], dtype=str)})),
        "no comparisons in file"),
    "duplicated_column": (".csv", csv_bytes("task_a,task_b,task_a,winner\nt1,t2,t3,a\n"),
                          "line 1 (header): column(s) ['task_a'] appear more than once"),
    "non_utf8": (".csv", csv_bytes("task_a,task_b,winner\nt1,t2,a\n") + "caf\u00e9,t2,b\n".encode("latin-1"),
                 "line 3 (row 2): not UTF-8 (byte 0xe9 at column 4)"),
    "huge_line": (".csv", csv_bytes("task_a,task_b,winner\nt1,t2,a\n" + "t" * (MAX_LINE_BYTES + 10) + ",t2,b\n"),
                  f"line 3 (row 2) is {MAX_LINE_BYTES + 15} bytes long"),
    "huge_id": (".csv", csv_bytes("task_a,task_b,winner\nt1,t2,a\n" + "t" * (MAX_ID_CHARS + 1) + ",t2,b\n"),
                f"row 2: task_a is {MAX_ID_CHARS + 1} characters long"),
    "ragged_row": (".csv", csv_bytes("task_a,task_b,winner\nt1,t2,a\nt2,t3,b,extra,more\n"),
                   "cannot parse csv: Error tokenizing data"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_outcomes_exit_1_with_one_line_naming_file_record_and_problem(tmp_path, capsys, case):
    ext, content, expected = CASES[case]
    path = tmp_path / f"{case}{ext}"
    path.write_bytes(content) if isinstance(content, bytes) else content(path)
    out = tmp_path / "utilities.csv"
    assert main(["fit-utilities", str(path), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"error: {path}: {expected}"), lines[0]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing written


@pytest.mark.parametrize("tasks, expected", [
    ("t1\nt2\nt1\nt3\n", "line 3: task id 't1' is listed twice (first at line 1)"),
    ("\n\n", "no task ids in file"),
])
def test_a_task_list_with_an_id_twice_or_none_is_refused(tmp_path, capsys, tasks, expected):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(GOOD)
    task_file = tmp_path / "tasks.txt"
    task_file.write_text(tasks)
    out = tmp_path / "utilities.parquet"
    assert main(["fit-utilities", str(pairs), "--out", str(out), "--tasks", str(task_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {task_file}: {expected}" and not out.exists()


def test_the_same_file_well_formed_fits(tmp_path, capsys):
    """The control: the checks above do not refuse a sound file (integer ids from Parquet included)."""
    pairs = tmp_path / "pairs.parquet"
    pd.DataFrame({"task_a": [1, 2, 3, 1] * 5, "task_b": [2, 3, 1, 3] * 5, "winner": ["a", "b", "a", "b"] * 5}).to_parquet(pairs)
    assert main(["fit-utilities", str(pairs), "--out", str(tmp_path / "u.csv")]) == 0
    assert (tmp_path / "u.csv").is_file()
