"""Where the shared real data lives, and a skip marker when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
MATH_ROLLOUTS = REALDATA / "math-rollouts"

requires_realdata = pytest.mark.skipif(
    not MATH_ROLLOUTS.is_dir(),
    reason=f"real math-rollouts traces not found at {MATH_ROLLOUTS} (../shared/realdata is absent)",
)
