"""The project's Dagster home: ``storage/dagster_home`` with the repository's dagster.yaml linked in.

Why a link rather than a copy: dagster.yaml stays the one file users edit, and the instance under
``storage/`` keeps run history across restarts (without DAGSTER_HOME the CLI uses a temporary home
that is deleted on exit).
"""

from __future__ import annotations

import os
from pathlib import Path

from ta_platform.common.paths import REPO_ROOT, storage_root

DEFINITIONS_MODULE = "ta_platform.definitions"


def prepare_dagster_home(home: Path) -> Path:
    """Create ``home`` with the repository's dagster.yaml linked in (what the Dagster CLI needs)."""
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if source.exists() and not link.exists():
        try:
            link.symlink_to(source)
        except OSError:
            link.write_text(source.read_text())
    return home


def ensure_dagster_home() -> Path:
    """Prepare the project's home (DAGSTER_HOME, else storage/dagster_home) and export it."""
    configured = os.environ.get("DAGSTER_HOME")
    home = prepare_dagster_home(Path(configured) if configured else storage_root() / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    os.environ.setdefault("DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME", DEFINITIONS_MODULE)
    return home
