"""One split per seed for the whole study: drawn once over the chains table by problem, recorded in
DuckDB, read by every slice and model (issue 20, item 5)."""

from __future__ import annotations

import numpy as np

from ta_platform.chains.lag_probes import LagConfig
from ta_platform.chains.splits import split_from_table
from ta_platform.chains.tripwires import chains_in_one_split
from ta_platform.store.metadata_store import MetadataStore
from ta_platform.studies import backtracking as bt
from ta_platform_tests.test_backtracking_lags import chains_of, token_frame

CONFIG = LagConfig(lags=(0, 4), bootstrap_resamples=20, c_grid=(0.1,))


def test_chains_dropped_by_one_model_keep_everyone_elses_split(tmp_path):
    """Model n's extraction lost 3 of 60 chains. With a split drawn per slice over the chains it kept, other
    chains moved between splits, so the two models were scored on different test sets; with the recorded
    dataset-wide split, every chain n kept has the same split as in model m and in the record."""
    tokens = token_frame(60, 60)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(tokens), 6))
    X[:, 0] += 1.5 * tokens["in_backtracking"].to_numpy()
    chains = chains_of(tokens).assign(content_hash=lambda frame: frame["chain_id"] + "-text")
    store = MetadataStore(tmp_path / "metadata.duckdb")
    store.replace_slice("backtracking_splits", bt.split_table(chains, 0, CONFIG), {"seed": 0})
    split = split_from_table(store.read_table("backtracking_splits", {"seed": 0}), 0)
    dropped = {"c003", "c017", "c041"}
    kept = ~tokens["chain_id"].isin(dropped).to_numpy()
    slices = iter([bt.Slice("m", 3, tokens, X, "fp-m"),
                   bt.Slice("n", 3, tokens[kept].reset_index(drop=True), X[kept], "fp-n")])
    result = bt.run_seed(split, slices, CONFIG, log=lambda _: None)
    used_m = result.provenance["slices"]["m/L3"]["split"]
    used_n = result.provenance["slices"]["n/L3"]["split"]
    assert set(used_n) == set(used_m) - dropped
    moved = {chain: (used_m[chain], used_n[chain]) for chain in used_n if used_n[chain] != used_m[chain]}
    assert moved == {}
    assert used_m == dict(split.split)
    # the two models' test rows are the same chains, minus what n lost
    test_chains = result.test_scores.groupby("model")["chain_id"].agg(set)
    assert test_chains["n"] == test_chains["m"] - dropped
    assignments = bt.split_assignments([result.provenance], store.read_table("backtracking_splits"), chains)
    assert chains_in_one_split(assignments).passed


def test_the_recorded_split_is_by_problem():
    tokens = token_frame(40, 40)
    problems = {"c000": "Same question.", "c001": "Same  question. ", "c002": "Same question."}  # whitespace only
    chains = chains_of(tokens, problems)
    table = bt.split_table(chains, 5, CONFIG)
    assert list(table.columns) == ["seed", "chain_id", "unit_id", "split"] and (table["seed"] == 5).all()
    same = table[table["chain_id"].isin(problems)]
    assert same["unit_id"].nunique() == 1 and same["split"].nunique() == 1  # one problem, one split
    assert table["unit_id"].nunique() == 40 - 2
    # and another seed gives another assignment of the same problems
    other = bt.split_table(chains, 6, CONFIG)
    assert (other["split"].to_numpy() != table["split"].to_numpy()).any()
    units = table.drop_duplicates("unit_id")  # 60/20/20 of the 38 problems, not of the 40 chains
    assert units.groupby("split").size().to_dict() == {"test": 8, "train": 22, "val": 8}
