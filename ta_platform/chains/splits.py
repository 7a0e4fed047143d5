"""The study's ONE split per seed: every chain of the dataset assigned by its problem, recorded once.

Why dataset-wide and by problem (issue 20, item 5): a split drawn per slice over the chains that
slice kept moves chains between splits as soon as one model drops a few (dropping 3 of 60 chains
moved 2 others), so two models were compared on different test sets; and a split keyed by the chain
text lets two chains of one problem straddle train and test. Here the unit is the problem
statement (``probing.splits.unit_identity``: whitespace-normalised, hashed), the assignment is
``probing.splits.unit_split`` over the units of the WHOLE chains table, and a chain takes its
problem's split. The lag-probes asset records it (table ``backtracking_splits``) before any slice
runs; every slice and model reads that record; a slice missing some chains leaves everyone else's
split where it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ta_platform.probing.splits import unit_identity, unit_split

SPLIT_COLUMNS = ["seed", "chain_id", "unit_id", "split"]
UNIT = "chain problem"  # what the study's intervals resample and its split keeps together


@dataclass(frozen=True)
class DatasetSplit:
    """One seed's assignment of every chain: ``split`` (chain id -> train/val/test) and ``unit``
    (chain id -> problem unit id)."""

    seed: int
    split: Mapping[str, str]
    unit: Mapping[str, str]

    def table(self) -> pd.DataFrame:
        """Rows of table ``backtracking_splits`` (``SPLIT_COLUMNS``), sorted by chain id."""
        ids = sorted(self.split)
        return pd.DataFrame({"seed": np.int64(self.seed), "chain_id": ids, "unit_id": [self.unit[c] for c in ids],
                             "split": [self.split[c] for c in ids]}, columns=SPLIT_COLUMNS)

    def splits_of(self, chain_ids: Iterable[str]) -> np.ndarray:
        return self._lookup(self.split, chain_ids)

    def units_of(self, chain_ids: Iterable[str]) -> np.ndarray:
        return self._lookup(self.unit, chain_ids)

    def _lookup(self, mapping: Mapping[str, str], chain_ids: Iterable[str]) -> np.ndarray:
        ids = [str(c) for c in chain_ids]
        missing = sorted(set(ids) - set(mapping))
        if missing:
            raise ValueError(f"seed {self.seed}: chain(s) {missing[:10]} have no recorded split (the split is drawn "
                             "once over the chains table: re-materialise backtracking_lag_probes after the chains)")
        return np.array([mapping[c] for c in ids], dtype=object)


def dataset_split(chains: pd.DataFrame, seed: int, fractions: tuple[float, float, float]) -> DatasetSplit:
    """The seed's split of every chain of ``chains`` (columns ``chain_id``, ``problem``) by problem unit."""
    units = {str(row.chain_id): unit_identity(row.problem) for row in chains.itertuples()}
    if len(set(units.values())) < 3:
        raise ValueError(f"the chains table holds {len(set(units.values()))} distinct problem(s) in {len(units)} "
                         "chain(s): train, validation and test need at least 3 problems (chains of one problem "
                         "always share a split)")
    by_unit = unit_split(sorted(set(units.values())), seed, fractions)
    return DatasetSplit(int(seed), {chain: by_unit[unit] for chain, unit in units.items()}, units)


def split_from_table(table: pd.DataFrame, seed: int) -> DatasetSplit:
    """The recorded split of ``seed`` (rows of ``backtracking_splits``); a clear error if none is recorded."""
    rows = table[table["seed"].astype(int) == int(seed)]
    if rows.empty:
        raise ValueError(f"no recorded split for seed {seed} in backtracking_splits")
    ids = rows["chain_id"].astype(str)
    return DatasetSplit(int(seed), dict(zip(ids, rows["split"].astype(str), strict=True)),
                        dict(zip(ids, rows["unit_id"].astype(str), strict=True)))
