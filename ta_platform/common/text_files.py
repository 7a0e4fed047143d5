"""Reading a user-supplied text file strictly: present, not empty, UTF-8, no runaway line.

Why one helper: the chains JSON, the needle JSONL, the model registry TOML and the OOD prompt set
are all hand-edited or exported by other tools, and the same whole-file faults reach all of them: a
file saved as Latin-1 or UTF-16, a zero-byte file left by a failed copy, or a runaway line (a 50 MB
field, a binary file under a text name) that would otherwise be parsed, tokenised or embedded at
great cost. Each is a ``DataFault`` naming the file, the line (and column or byte) and the problem,
raised before any parser sees the text, so nothing downstream starts on such a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ta_platform.common.faults import DataFault

MAX_LINE_BYTES = 1 << 20  # line-oriented files (JSONL, TOML): a record or key of a megabyte is not one
MAX_JSON_LINE_BYTES = 16 << 20  # a JSON document may be minified onto few lines; 16 MiB is still a runaway


def read_text_strict(path: str | os.PathLike[str], *, what: str, max_line_bytes: int = MAX_LINE_BYTES) -> str:
    """The text of ``path``; ``DataFault`` (kind missing/empty/encoding/huge_line) for a whole-file fault.

    ``what`` names the file's role in messages ("chains file", "model registry", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFault(str(path), f"{what} not found", kind="missing")
    data = path.read_bytes()
    if not data.strip():
        raise DataFault(str(path), f"{what} is empty ({len(data)} bytes)", kind="empty")
    check_line_lengths(data, str(path), max_line_bytes, f"a runaway field or not a {what}")
    return decode_utf8(data, str(path))


def check_line_lengths(data: bytes, source: str, max_line_bytes: int, what_then: str,
                       describe: Callable[[int], str] = lambda line: "") -> None:
    """``DataFault`` naming the first line longer than ``max_line_bytes`` (``describe(n)`` appended to "line n")."""
    start = 0
    for line, end in enumerate(line_ends(data), 1):
        if end - start > max_line_bytes:
            raise DataFault(source, f"line {line}{describe(line)} is {end - start} bytes long (limit {max_line_bytes}): "
                            f"{what_then}", kind="huge_line")
        start = end + 1


def decode_utf8(data: bytes, source: str, describe: Callable[[int], str] = lambda line: "") -> str:
    """``data`` as UTF-8; else a ``DataFault`` naming the line, the byte and its column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataFault(source, f"line {line}{describe(line)}: not UTF-8 (byte 0x{data[error.start]:02x} at column "
                        f"{column}); save the file as UTF-8", kind="encoding") from None


def line_ends(data: bytes) -> Iterator[int]:
    """The offset of every newline of ``data``, then its length (the end of the last line)."""
    position = data.find(b"\n")
    while position != -1:
        yield position
        position = data.find(b"\n", position + 1)
    yield len(data)
