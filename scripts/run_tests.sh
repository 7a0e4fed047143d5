#!/usr/bin/env bash
# Set-up command 2: install with dev tools, lint, run the whole test suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup_env.sh" "dev,embeddings"
source "$REPO/.venv/bin/activate"
cd "$REPO"
ruff check .
exec python -m pytest -q "$@"
