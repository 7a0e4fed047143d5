"""``ta-platform materialize --pilot N``: the whole graph on N problems in its own storage, first.

Why: a full run of a 14B model over thousands of traces costs GPU hours; a fault in the data, the
spans or the probes shows up just as well on a handful of problems. The seeds staged every study as
pilot-then-full; here the pilot is the same main job, in ``<storage>/pilot`` (its own DuckDB file
and Dagster instance, so it never mixes with the full run's history), on the first N problems by
id, and the full run starts only if the pilot's release gate passes. Model weights are shared with
the full run (one download, one conversion): the model cache and the Hub cache stay the full run's.
The gate needs an evaluation of every gated check, so a pilot restricted with ``--stage`` to part of
the graph cannot pass it (the verdict lists the missing evaluations).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ta_platform.common.paths import storage_root


def pilot_environment(n_problems: int, pilot_root: Path) -> dict[str, str]:
    """The full run's environment, pointed at the pilot's storage and limited to ``n_problems``."""
    from ta_platform.extraction.loading import default_model_cache, hub_cache_dir

    env = dict(os.environ)
    env.update({
        "TA_STORAGE": str(pilot_root),
        "DAGSTER_HOME": str(pilot_root / "dagster_home"),
        "TA_MAX_PROBLEMS": str(n_problems),
        # weights stay where the full run finds them: tiny builds and GGUF conversions, and Hub downloads
        "TA_MODEL_CACHE": str(default_model_cache()),
        "TA_HF_CACHE": str(hub_cache_dir()),
    })
    env.pop("TA_DUCKDB_PATH", None)  # the pilot never writes the full run's metadata file
    return env


def run_pilot(n_problems: int, stage_args: list[str]) -> bool:
    """Run the main job on ``n_problems`` problems in a fresh pilot storage; True if its gate passes."""
    if n_problems < 3:
        raise SystemExit("--pilot needs at least 3 problems (train, validation and test splits are by problem)")
    pilot_root = storage_root() / "pilot"
    if pilot_root.exists():
        shutil.rmtree(pilot_root)  # a pilot always starts from empty storage, like a new user's
    env = pilot_environment(n_problems, pilot_root)
    command = [sys.executable, "-m", "ta_platform.cli.main", "materialize", *stage_args]
    print(f"[pilot] {n_problems} problems in {pilot_root}", flush=True)
    finished = subprocess.run(command, env=env)
    if finished.returncode != 0:
        print(f"[pilot] FAILED: the pilot's main job exited {finished.returncode} (its output is above; its "
              f"storage is kept in {pilot_root}); the full run was not started", flush=True)
        return False
    gate = subprocess.run([sys.executable, "-m", "ta_platform.cli.main", "gate", "--json"], env=env,
                          capture_output=True, text=True)
    lines = gate.stdout.strip().splitlines()
    verdict = json.loads(lines[-1]) if lines else {"passed": False, "error": gate.stderr.strip()[-500:]}
    if gate.returncode != 0 or not verdict.get("passed"):
        hint = (" (the pilot ran only the stages given with --stage; the gate needs every stage's checks)"
                if verdict.get("missing") and any(arg.startswith("--stage") for arg in stage_args) else "")
        print(f"[pilot] FAILED: the pilot's release gate did not pass{hint}: {json.dumps(verdict)[:2000]}; "
              f"the full run was not started (pilot storage: {pilot_root})", flush=True)
        return False
    print("[pilot] release gate passed; starting the full run", flush=True)
    return True
