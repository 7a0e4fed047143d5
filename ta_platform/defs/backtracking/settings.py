"""Backtracking study settings as a resource (stored as provenance with every artifact)."""

import dagster as dg

from ta_platform.chains.lag_probes import LagConfig
from ta_platform.chains.lags import DEFAULT_LAGS


class BacktrackingSettings(dg.ConfigurableResource):
    """``source``: "embedded", or the path of an all_annotated_chains.json file; empty = TA_CHAINS_SOURCE
    (default embedded). ``embedded_chains``: how many chains the embedded generator writes.
    ``bootstrap_resamples``: draws of chain problems per margin interval (each draw recomputes the
    seed-averaged margin, ``chains/intervals.py``); 0 = 1000 for a chains file and 100 for the embedded
    default (the main job's time budget).
    ``null_permutations``: 5 (the null band is derived for K, so a smaller K is a wider calibrated
    band); the embedded default writes 24 chains. Both sized for the main job's budget."""

    source: str = ""
    embedded_chains: int = 24
    lags: list[int] = list(DEFAULT_LAGS)
    bootstrap_resamples: int = 0
    null_permutations: int = 5
    tripwire_max_chains: int = 60
    tripwire_seed: int = 0

    def lag_config(self) -> LagConfig:
        from ta_platform.chains.records import EMBEDDED, chains_source

        resamples = self.bootstrap_resamples or (100 if chains_source(self.source or None) == EMBEDDED else 1000)
        return LagConfig(lags=tuple(self.lags), bootstrap_resamples=resamples,
                         null_permutations=self.null_permutations, tripwire_max_chains=self.tripwire_max_chains)
