"""Reading pairwise outcomes and writing utilities as CSV or Parquet (chosen by file extension).

Why one module: the CLI, the Dagster assets and the tests must agree on formats and on what counts
as bad input. Every reading error is a ``DataFault`` naming the file (and the row, for bad rows);
every write is atomic, so a failed run never leaves a half-written utilities file.

Checked before the comparisons are validated (``thurstone.validate_outcomes``): a CSV that is not
UTF-8 (the line and byte named), a line longer than ``MAX_LINE_BYTES`` (a runaway field, a file that is
not a table), a header naming a column twice (pandas would silently rename the second), ids of the
wrong type (a float or a boolean read from Parquet would become a made-up id like "1.5") or longer
than ``MAX_ID_CHARS``, and a task list with an id twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ta_platform.common.atomic import atomic_path
from ta_platform.common.faults import DataFault
from ta_platform.common.text_files import check_line_lengths, decode_utf8
from ta_platform.preferences.thurstone import validate_outcomes

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
UTILITY_COLUMNS = ("task_id", "mu", "sigma")
ID_COLUMNS = ("task_a", "task_b")
MAX_LINE_BYTES = 1 << 20
MAX_ID_CHARS = 512


def table_format(path: str | os.PathLike[str]) -> str:
    """"csv" or "parquet" from the extension; ``DataFault`` for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataFault(str(path), f"unsupported extension {suffix!r}; use .csv or .parquet", kind="format")
    return FORMATS[suffix]


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV (all columns as strings, so ids like "007" survive) or Parquet file."""
    fmt = table_format(path)
    if not Path(path).is_file():
        raise DataFault(str(path), "file not found", kind="missing")
    if fmt == "csv":
        _check_csv_text(path)
    try:
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=True)
        frame = pd.read_parquet(path)
    except DataFault:
        raise
    except Exception as error:  # parser errors differ by engine; the message is what matters
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataFault(str(path), f"cannot parse {fmt}: {first_line}", kind="parse") from error
    duplicated = sorted({str(c) for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataFault(str(path), f"column(s) {duplicated} appear more than once", kind="format")
    return frame


def _check_csv_text(path: str | os.PathLike[str]) -> None:
    """UTF-8 throughout, no line over ``MAX_LINE_BYTES``, no column named twice in the header."""
    data = Path(path).read_bytes()
    decode_utf8(data, str(path), _row_of_line)
    check_line_lengths(data, str(path), MAX_LINE_BYTES, "not a comparison record", _row_of_line)
    header = data[: data.find(b"\n")] if b"\n" in data else data
    names = [name.strip().strip('"') for name in header.decode("utf-8").rstrip("\r").split(",")]
    duplicated = sorted({name for name in names if names.count(name) > 1 and name})
    if duplicated:
        raise DataFault(str(path), f"line 1 (header): column(s) {duplicated} appear more than once", kind="format")


def _row_of_line(line: int) -> str:
    """" (row N)" for a data line of a CSV whose first line is the header."""
    return " (header)" if line == 1 else f" (row {line - 1})"


def check_id_columns(frame: pd.DataFrame, source: str) -> None:
    """Ids are text (or integers, read as their digits) and at most ``MAX_ID_CHARS`` long; winners are text.

    Vectorised for the usual all-text or all-integer column; the row-by-row scan only runs to name
    the first bad value."""
    for column in (c for c in ID_COLUMNS if c in frame.columns):
        values = frame[column].reset_index(drop=True)
        if pd.api.types.is_integer_dtype(values):
            continue
        present = values[~values.isna()]
        if pd.api.types.is_string_dtype(present) and bool(present.map(lambda v: isinstance(v, str)).all()):
            too_long = (present.str.len() > MAX_ID_CHARS).to_numpy()
            if too_long.any():
                row = int(present.index[too_long][0])
                raise DataFault(source, f"row {row + 1}: {column} is {len(present[row])} characters long "
                                f"(limit {MAX_ID_CHARS})", kind="format")
            continue
        for row, value in present.items():
            if isinstance(value, bool) or not isinstance(value, (str, int)) and not _is_integer(value):
                raise DataFault(source, f"row {row + 1}: {column} is {value!r} ({type(value).__name__}); "
                                "expected a text id", kind="type")
    if "winner" in frame.columns:
        winners = frame["winner"].reset_index(drop=True)
        present = winners[~winners.isna()]
        not_text = present.map(lambda v: not isinstance(v, str)).to_numpy()
        if not_text.any():
            row = int(present.index[not_text][0])
            value = present[row]
            shown = value.item() if hasattr(value, "item") else value
            raise DataFault(source, f"row {row + 1}: winner is {shown!r} ({type(value).__name__}); expected 'a' or 'b'",
                            kind="type")


def _is_integer(value: object) -> bool:
    import numpy as np

    return isinstance(value, np.integer) and not isinstance(value, np.bool_)


def read_outcomes(path: str | os.PathLike[str], task_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Validated outcomes (``task_a, task_b, winner`` + any extra columns) from CSV or Parquet.

    Rows are numbered from 1 over data rows (a CSV's header is not a row). An optional ``heldout``
    column (true/false) is parsed to bool.
    """
    frame = read_table(path)
    if frame.empty:
        raise DataFault(str(path), "no comparisons in file", kind="empty")
    check_id_columns(frame, str(path))
    frame = validate_outcomes(frame, task_ids, source=str(path))
    if "heldout" in frame.columns:
        frame["heldout"] = _parse_bool(frame["heldout"], str(path))
    return frame


def _parse_bool(column: pd.Series, source: str) -> pd.Series:
    if column.dtype == bool:
        return column
    text = column.astype(str).str.strip().str.lower()
    mapping = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    bad = ~text.isin(mapping)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataFault(source, f"row {row + 1}: heldout is {column.iloc[row]!r}; expected true or false")
    return text.map(mapping).astype(bool)


def read_task_ids(path: str | os.PathLike[str]) -> list[str]:
    """Known task ids: a ``.txt`` file (one per line) or a CSV/Parquet table with a ``task_id`` column."""
    if Path(path).suffix.lower() == ".txt":
        if not Path(path).is_file():
            raise DataFault(str(path), "file not found", kind="missing")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise DataFault(str(path), f"not UTF-8 (byte offset {error.start})", kind="encoding") from None
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        where = "line"
    else:
        table = read_table(path)
        if "task_id" not in table.columns:
            raise DataFault(str(path), "missing column 'task_id'")
        lines = [(n, str(v)) for n, v in enumerate(table["task_id"].tolist(), 1)]
        where = "row"
    first: dict[str, int] = {}
    for n, task_id in lines:
        if task_id in first:
            raise DataFault(str(path), f"{where} {n}: task id {task_id!r} is listed twice (first at {where} "
                            f"{first[task_id]})", kind="duplicate")
        first[task_id] = n
    if not lines:
        raise DataFault(str(path), "no task ids in file", kind="empty")
    return [task_id for _, task_id in lines]


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Atomically write ``frame`` in the format named by the extension."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return Path(path)


def write_utilities(utilities: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``task_id, mu, sigma`` (atomic; CSV or Parquet by extension)."""
    missing = [c for c in UTILITY_COLUMNS if c not in utilities.columns]
    if missing:
        raise ValueError(f"utilities lack column(s) {missing}")
    return write_table(utilities.loc[:, list(UTILITY_COLUMNS)], path)


def read_utilities(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read utilities written by ``write_utilities`` (mu and sigma as floats)."""
    table = read_table(path)
    missing = [c for c in UTILITY_COLUMNS if c not in table.columns]
    if missing:
        raise DataFault(str(path), f"missing column(s) {missing}")
    table = table.loc[:, list(UTILITY_COLUMNS)].copy()
    table["task_id"] = table["task_id"].astype(str)
    try:
        table[["mu", "sigma"]] = table[["mu", "sigma"]].astype(float)
    except ValueError as error:
        raise DataFault(str(path), f"mu/sigma not numeric: {error}") from error
    return table
