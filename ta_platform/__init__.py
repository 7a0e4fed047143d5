"""ta-platform: thought-anchor and preference probes as one Dagster asset graph.

The science lives in plain subpackages (``rollouts``, ``anchors``, ``extraction``, ``probing``,
``preferences``) that never import Dagster; ``ta_platform.defs`` wires them into assets and checks.
"""

import os

# OpenMP threads that spin while waiting collapse torch's CPU throughput as soon as anything else runs
# on the machine (measured on a 2-core box under load: a 25-token forward of a 44M-parameter model took
# 0.77 s with the default policy, 0.012 s with PASSIVE, same 2 threads). libgomp reads this when torch
# is first imported, which in every entry point happens after this package is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
