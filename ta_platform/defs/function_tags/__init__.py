"""The function-tag study plugged in as one ``StudyWiring`` (docs/new_study.md walks through it).

``ta-platform materialize --study function_tags`` first runs the thought-anchor stages it reads (``needs``:
sentence labels and activations), then its own stage; the main job runs it after those stages.
"""

import dagster as dg

from ta_platform.defs.function_tags import assets, checks
from ta_platform.defs.stages import Stage, StudyWiring

STUDY = StudyWiring(
    name="function_tags",
    asset_modules=(assets,),
    check_modules=(checks,),
    jobs=(dg.define_asset_job("function_tags_job", selection=dg.AssetSelection.assets(assets.function_tag_probes),
                              description="Function-tag probe, baselines, tripwires and summary."),),
    stages=(Stage("function_tags", "function_tags_job"),),
    resources={"function_tag_settings": assets.FunctionTagSettings()},
    description="Which role a sentence plays (its function tag), beyond position and text.",
    needs=("data", "activations"),
)
