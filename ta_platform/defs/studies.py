"""The studies plugged into the code location beside thought anchors and preferences.

Each entry is a ``StudyWiring`` (see ``defs/stages.py``) from ``defs/<study>/__init__.py``. Adding a
study is one import and one list entry here; ``definitions.py`` does the rest (assets, checks in the
release gate, jobs, its stages in the main job, ``ta-platform materialize --study NAME``).
"""

from __future__ import annotations

from ta_platform.defs.backtracking import STUDY as BACKTRACKING
from ta_platform.defs.function_tags import STUDY as FUNCTION_TAGS
from ta_platform.defs.needle import STUDY as NEEDLE
from ta_platform.defs.preferences.ood import WIRING as OOD
from ta_platform.defs.stages import StudyWiring

STUDIES: list[StudyWiring] = [
    BACKTRACKING,
    NEEDLE,
    OOD,
    FUNCTION_TAGS,
]
