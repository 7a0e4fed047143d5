"""OOD system-prompt experiments (seed 004 step 5): does the utility probe track induced preferences?

Part of the preference domain (it reads the preference study's assets and settings), wired as its own study.

Plugged in through ``WIRING`` (``defs/studies.py``): ``ta-platform materialize --study ood`` runs the
preference study's stages (``needs``: its assets are the OOD assets' Dagster dependencies), then the
``ood`` stage (prompt set -> behaviour -> probe deltas -> results); the main job runs the ``ood`` stage
after the preference study.
"""

from __future__ import annotations

import dagster as dg

from ta_platform.defs.preferences import ood_assets as assets
from ta_platform.defs.preferences import ood_checks as checks
from ta_platform.defs.preferences.ood_assets import OodSettings
from ta_platform.defs.stages import Stage, StudyWiring

ood_job = dg.define_asset_job(
    "ood_job", selection=dg.AssetSelection.assets(assets.ood_prompt_set, assets.ood_behaviour,
                                                  assets.ood_probe_deltas, assets.ood_results),
    description="OOD system-prompt experiments on the preference study's task pool, utilities and judge.",
)

WIRING = StudyWiring(
    name="ood",
    asset_modules=(assets,),
    check_modules=(checks,),
    jobs=(ood_job,),
    stages=(Stage("ood", "ood_job"),),
    resources={"ood_settings": OodSettings()},
    description="Induced preferences (system prompts): behavioural vs probe deltas, with controls.",
    needs=("preferences-data", "prompts", "preferences"),
)
