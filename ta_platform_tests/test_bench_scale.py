"""The growth-exponent fit of ``ta-platform bench scale`` and its reading of the stage lines.

The benchmark itself runs the main job's stages several times (minutes), so it is not a test; what
could silently give wrong figures is tested here: the fit, and the parsing of materialize's output.
"""

from __future__ import annotations

import math

import pytest

from ta_platform.cli.bench_scale import STAGE_LINE, fit_power_law


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 0.5])
def test_the_fit_recovers_a_planted_power_law(exponent):
    sizes = [24, 96, 384]
    a, b = fit_power_law(sizes, [3.0 * s ** exponent for s in sizes])
    assert b == pytest.approx(exponent) and a == pytest.approx(3.0)


def test_one_size_has_no_exponent():
    assert math.isnan(fit_power_law([24], [5.0])[1])


def test_stage_lines_are_read_with_their_outcome():
    out = ("[data] running data_job\n[data] run 1a2b succeeded in 12.5s; failed checks: none\n"
           "[summary] run 3c4d FAILED in 7.0s; failed checks: ['x']\n[gate] ok\n")
    found = [(m["stage"], m["outcome"], float(m["seconds"])) for m in STAGE_LINE.finditer(out)]
    assert found == [("data", "succeeded", 12.5), ("summary", "FAILED", 7.0)]
