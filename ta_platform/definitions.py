"""The code location: every asset, check, job and resource of ta-platform.

Loaded by ``dagster dev`` (workspace.yaml), ``dagster asset materialize -m ta_platform.definitions``
and the ``ta-platform materialize`` command. Keep imports light: torch and transformers are only
imported inside asset bodies.
"""

from __future__ import annotations

import dagster as dg

from ta_platform.defs.compute import ComputeResource
from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource, StudySettings
from ta_platform.defs.thought_anchors import assets as thought_anchor_assets
from ta_platform.defs.thought_anchors import checks as thought_anchor_checks

all_assets = dg.load_assets_from_modules([thought_anchor_assets])
all_checks = dg.load_asset_checks_from_modules([thought_anchor_checks])

main_job = dg.define_asset_job("main_job", selection=dg.AssetSelection.all(), description=(
    "Everything on the configured data source (the embedded default unless TA_DATA_SOURCE says otherwise)."
))

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[main_job],
    resources={
        "metadata_store": MetadataStoreResource(),
        "rollouts": RolloutsResource(),
        "settings": StudySettings(),
        "compute": ComputeResource(),
    },
)
