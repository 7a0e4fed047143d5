"""Run the Thurstonian benchmark (``ta-platform bench thurstone --json``) and fail if targets are missed.

Named ``bench_*`` so pytest does not collect it: it takes ~30-60 s (the Adam reference dominates).
Usage: ``.venv/bin/python ta_platform_tests/benchmarks/bench_thurstone.py [extra args]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

from ta_platform.cli.main import main as cli_main


def main(extra: list[str] | None = None) -> int:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = cli_main(["bench", "thurstone", "--json", *(extra or [])])
    text = buffer.getvalue()
    print(text, end="")
    result = json.loads(text.strip().splitlines()[-1])
    return status or (0 if result.get("targets_met") else 1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
