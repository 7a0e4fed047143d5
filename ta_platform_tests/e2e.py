"""Helpers for end-to-end tests: a project storage in a temporary folder and the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ta_platform.common.instance import prepare_dagster_home

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def project_env(storage: Path, **extra: str) -> dict[str, str]:
    """The environment the README's set-up gives, pointed at ``storage``."""
    prepare_dagster_home(storage / "dagster_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TA_", "DAGSTER_"))}
    env.update({
        "TA_STORAGE": str(storage),
        "DAGSTER_HOME": str(storage / "dagster_home"),
        "DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME": "ta_platform.definitions",
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    })
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
