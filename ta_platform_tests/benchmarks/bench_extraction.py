"""Runnable copy of ``ta-platform bench extraction`` (not collected by pytest: no ``test_`` prefix).

Usage: ``python ta_platform_tests/benchmarks/bench_extraction.py [--json] [--shape 14b --device cuda]``.
"""

from __future__ import annotations

import sys

from ta_platform.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "extraction", *sys.argv[1:]]))
