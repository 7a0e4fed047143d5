"""Two tiers: CI runs every test except the release battery, which ``TA_RELEASE_TESTS=1`` adds.

Why: the fault and scale battery (a study killed and rerun, a disk filled, two commands racing on a
Postgres instance, every study alone from an empty storage, the bench at a fraction) is minutes per
case on a 2-core machine and would take CI past its 25-minute budget. Each of those tests has a
cheaper sibling in CI (one kill stage a day, the SQLite race, the studies no other test runs alone),
and the whole battery runs before a release: ``TA_RELEASE_TESTS=1 bash scripts/run_tests.sh``.
"""

from __future__ import annotations

import os

import pytest

RELEASE_ENV = "TA_RELEASE_TESTS"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(RELEASE_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"release battery (minutes per case): {RELEASE_ENV}=1 runs it")
    for item in items:
        if "release" in item.keywords:
            item.add_marker(skip)
