#!/usr/bin/env bash
# Set-up command 2: install with dev tools, lint, run the whole test suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup_env.sh" "dev,embeddings"
source "$REPO/.venv/bin/activate"
cd "$REPO"
ruff check .
# Two workers, one test file each at a time (module fixtures stay together): the end-to-end tests spend
# much of their time in subprocess start-up, Dagster bookkeeping and waits, so two files overlap well.
exec python -m pytest -q -n 2 --dist loadfile "$@"
