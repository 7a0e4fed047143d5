#!/usr/bin/env bash
# Set-up command 1: install, then run the main job on the embedded default (or TA_DATA_SOURCE).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup_env.sh" embeddings
source "$REPO/.venv/bin/activate"
cd "$REPO"
exec ta-platform materialize "$@"
