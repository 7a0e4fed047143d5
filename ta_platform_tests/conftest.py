"""Two tiers: CI runs every test except the release battery, which ``TA_RELEASE_TESTS=1`` adds.

Why: the fault and scale battery (a study killed and rerun, a disk filled, two commands racing on a
Postgres instance, every study alone from an empty storage, the bench at a fraction) is minutes per
case on a 2-core machine and would take CI past its 25-minute budget. Each of those tests has a
cheaper sibling in CI (a kill during activations and during probes, the storage-lock unit tests and
four queued runs on Postgres, the synthetic 20-seed tripwire runs, the studies no other test runs alone), and the whole battery runs before a release:
``TA_RELEASE_TESTS=1 bash scripts/run_tests.sh``.

The fault battery (issue 22: corrupt artifacts, a full disk, a flaky Hub, two runs at once, kills, bad
files) is the set of tests marked ``fault``; those that also compare every output with an
uninterrupted run (or hash every earlier file) are marked ``outputs_compared``. The run ends with one
line counting them: faults planted (cases run), survived (passed), and outputs lost (failed cases that
compare outputs), so a release run states the battery's figure without anyone counting by hand.
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


def battery_figure(reports) -> str | None:
    """One line over the ``fault`` cases among ``reports`` (pytest's passed/failed/skipped call reports)."""
    ran = [r for r in reports if "fault" in r.keywords and not r.skipped]
    skipped = sum(1 for r in reports if "fault" in r.keywords and r.skipped)
    if not ran and not skipped:
        return None
    survived = sum(1 for r in ran if r.passed)
    lost = sum(1 for r in ran if r.failed and "outputs_compared" in r.keywords)
    return (f"fault battery: {len(ran)} faults planted, {survived} survived, {len(ran) - survived} not survived, "
            f"outputs lost: {lost} (cases that compare every output: "
            f"{sum(1 for r in ran if 'outputs_compared' in r.keywords)}); {skipped} case(s) not run (skipped)")


def pytest_terminal_summary(terminalreporter):
    reports = [r for key in ("passed", "failed", "skipped", "error") for r in terminalreporter.stats.get(key, [])
               if getattr(r, "when", "call") == "call" or (r.skipped and r.when == "setup")]
    line = battery_figure(reports)
    if line:
        terminalreporter.write_line(line)
