"""The project's Dagster home and code-location name, shared by the UI and both command lines.

Home: ``storage/dagster_home`` (or ``$TA_STORAGE/dagster_home``) with ``config/dagster.yaml`` linked
in. Why a link rather than a copy: config/dagster.yaml stays the one file users edit, and the
instance under ``storage/`` keeps run history across restarts (without DAGSTER_HOME the CLI uses a
temporary home that is deleted on exit). Why config/ and not the repository root: ``dagster dev``
warns that a dagster.yaml in the working directory "will not be used" when DAGSTER_HOME is elsewhere.

Code location: workspace.yaml names it after the definitions module. The UI files the runs it
launches under the label ``__repository__@ta_platform.definitions`` (the ``.dagster/repository``
run tag, which each job's Runs tab filters on); a run started in-process carries no such label
unless it is given ``code_location_tags()``, so the CLI tags its runs with the same label.
"""

from __future__ import annotations

import os
from pathlib import Path

from ta_platform.common.paths import REPO_ROOT, storage_root

DEFINITIONS_MODULE = "ta_platform.definitions"
# workspace.yaml's location_name; test_dagster_dev checks that the running UI reports it.
CODE_LOCATION_NAME = DEFINITIONS_MODULE
# A Definitions object loads as Dagster's single implicit repository, named "__repository__".
REPOSITORY_LABEL = f"__repository__@{CODE_LOCATION_NAME}"
# Dagster's hidden run tag for the repository label (dagster._core.storage.tags.REPOSITORY_LABEL_TAG).
REPOSITORY_LABEL_TAG = ".dagster/repository"
INSTANCE_CONFIG = REPO_ROOT / "config" / "dagster.yaml"


def code_location_tags() -> dict[str, str]:
    """Run tags that file an in-process run under the UI's code location (one run history)."""
    return {REPOSITORY_LABEL_TAG: REPOSITORY_LABEL}


def prepare_dagster_home(home: Path) -> Path:
    """Create ``home`` with config/dagster.yaml linked in (what the Dagster CLI needs).

    A link left pointing elsewhere (the old repository-root dagster.yaml, another checkout) is
    re-pointed; a regular file is a user's own configuration and is left alone.
    """
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if link.is_symlink() and link.resolve() != INSTANCE_CONFIG.resolve():
        link.unlink()
    if INSTANCE_CONFIG.exists() and not link.exists():
        try:
            link.symlink_to(INSTANCE_CONFIG)
        except OSError:
            link.write_text(INSTANCE_CONFIG.read_text())
    return home


def ensure_dagster_home() -> Path:
    """Prepare the project's home (DAGSTER_HOME, else storage/dagster_home) and export it."""
    configured = os.environ.get("DAGSTER_HOME")
    home = prepare_dagster_home(Path(configured) if configured else storage_root() / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    os.environ.setdefault("DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME", DEFINITIONS_MODULE)
    return home
