"""ta-platform: thought-anchor and preference probes as one Dagster asset graph.

The science lives in plain subpackages (``rollouts``, ``anchors``, ``extraction``, ``probing``,
``preferences``) that never import Dagster; ``ta_platform.defs`` wires them into assets and checks.
"""

__version__ = "0.1.0"
