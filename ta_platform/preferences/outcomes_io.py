"""Reading pairwise outcomes and writing utilities as CSV or Parquet (chosen by file extension).

Why one module: the CLI, the Dagster assets and the tests must agree on formats and on what counts
as bad input. Every reading error is a ``DataFault`` naming the file (and the row, for bad rows);
every write is atomic, so a failed run never leaves a half-written utilities file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ta_platform.common.atomic import atomic_path
from ta_platform.common.faults import DataFault
from ta_platform.preferences.thurstone import validate_outcomes

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
UTILITY_COLUMNS = ("task_id", "mu", "sigma")


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
    try:
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=True)
        return pd.read_parquet(path)
    except DataFault:
        raise
    except Exception as error:  # parser errors differ by engine; the message is what matters
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataFault(str(path), f"cannot parse {fmt}: {first_line}", kind="parse") from error


def read_outcomes(path: str | os.PathLike[str], task_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Validated outcomes (``task_a, task_b, winner`` + any extra columns) from CSV or Parquet.

    Rows are numbered from 1 over data rows (a CSV's header is not a row). An optional ``heldout``
    column (true/false) is parsed to bool.
    """
    frame = read_table(path)
    if frame.empty:
        raise DataFault(str(path), "no comparisons in file", kind="empty")
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
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    table = read_table(path)
    if "task_id" not in table.columns:
        raise DataFault(str(path), "missing column 'task_id'")
    return table["task_id"].astype(str).tolist()


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
