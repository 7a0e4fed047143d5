"""The backtracking study through Dagster on real annotated chains with the real pretrained model
(SmolLM2-135M-Instruct), two seeds (the claim is the seed-averaged margin with its chain-problem interval).

CI runs the first 60 of the 210 real chains at layer L15 (the forward pass and the lag probes over all
210 chains at L7 and L15 take ~30 minutes on 2 cores, more than the whole suite's budget);
``TA_FULL_REALDATA=1`` runs all 210 chains at both layers, as the issue note reports them. Skipped
with a reason when ../shared/realdata is absent."""

from __future__ import annotations

import json
import os

from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import project_env, run_cli
from ta_platform_tests.real_model import real_model_registry, shared_model_cache
from ta_platform_tests.test_backtracking_chains import REAL_CHAINS, requires_real_chains

FULL = os.environ.get("TA_FULL_REALDATA") == "1"
N_CHAINS = 210 if FULL else 60
LAYERS = {"L7", "L15"} if FULL else {"L15"}


@requires_real_chains
def test_study_on_the_real_chains_with_the_real_model(tmp_path):
    registry = tmp_path / "registry.toml"
    registry.write_text(real_model_registry("[0.25, 0.5]" if FULL else "[0.5]"))
    chains = REAL_CHAINS
    if not FULL:  # the first N_CHAINS records, in the file's own format (a temporary file, not in the repo)
        chains = tmp_path / "chains.json"
        chains.write_text(json.dumps(json.loads(REAL_CHAINS.read_text())[:N_CHAINS]))
    storage = tmp_path / "storage"
    env = project_env(storage, TA_MODEL_REGISTRY=str(registry), TA_CHAINS_SOURCE=str(chains),
                      TA_MODEL_CACHE=str(shared_model_cache()))
    done = run_cli(["ta-platform", "materialize", "--study", "backtracking", "--seeds", "0...1"], env, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "failed checks: none" in done.stdout
    store = MetadataStore(storage / "metadata.duckdb")
    faults = store.query("SELECT item, kind, problem FROM faults WHERE stage = 'backtracking:chains'")
    probe = store.query("SELECT layer, lag, value FROM backtracking_probe_metrics WHERE probe = 'linear_probe' "
                        "AND metric = 'auroc'")
    margins = store.query("SELECT * FROM backtracking_margin_summary WHERE lag = 0 AND target = 'span'")
    splits = store.query("SELECT seed, chain_id, unit_id, split FROM backtracking_splits")
    # every record either aligned or named with its fault
    assert len(faults) <= 10 * N_CHAINS // 210 + 1 and faults["problem"].str.len().gt(0).all()
    assert set(probe["layer"]) == LAYERS and set(probe["lag"]) == {-8, -4, 0, 4, 8, 16, 32}
    # one recorded split per seed over every aligned chain, by problem (each real record is its own problem)
    assert splits.groupby("seed")["chain_id"].nunique().tolist() == [N_CHAINS - len(faults)] * 2
    assert splits.groupby("seed")["unit_id"].nunique().tolist() == [N_CHAINS - len(faults)] * 2
    # the real model reads backtracking at lag 0 beyond the current token alone and beyond position: the
    # seed-averaged AUROC margin's chain-problem interval is above 0 at every layer
    assert set(margins["unit"]) == {"chain problem"} and (margins["n_seeds"] == 2).all()
    beaten = margins[margins["baseline"].isin(["token_identity", "position"])]
    assert len(beaten) == 2 * len(LAYERS) and (beaten["ci_low"] > 0).all(), beaten
    assert (storage / "reports" / "backtracking_smollm2-135m.png").read_bytes()[:4] == b"\x89PNG"
