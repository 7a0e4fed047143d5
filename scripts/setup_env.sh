#!/usr/bin/env bash
# Create .venv (Python 3.11), install the project, and make the venv's activate script export the
# project's Dagster settings. Sourced by run_main.sh and run_tests.sh; safe to re-run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
EXTRAS="${1:-embeddings}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: left free, pip resolves the newest build with several GB of CUDA wheels.
.venv/bin/pip install --disable-pip-version-check -q "torch==2.13.0"
.venv/bin/pip install --disable-pip-version-check -q -e ".[${EXTRAS}]"
if ! grep -q "ta-platform settings" .venv/bin/activate; then
  cat >> .venv/bin/activate <<ACTIVATE
# ta-platform settings: the project's Dagster instance and code location for the bare CLI
export DAGSTER_HOME="$REPO/storage/dagster_home"
export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME="ta_platform.definitions"
export DAGSTER_MODULE_NAME="ta_platform.definitions"
ACTIVATE
fi
mkdir -p "$REPO/storage/dagster_home"
[ -e "$REPO/storage/dagster_home/dagster.yaml" ] || ln -s "$REPO/dagster.yaml" "$REPO/storage/dagster_home/dagster.yaml"
# Create the instance's SQLite schema once, before any parallel runs (schema creation is not concurrent-safe).
DAGSTER_HOME="$REPO/storage/dagster_home" .venv/bin/dagster instance migrate >/dev/null
