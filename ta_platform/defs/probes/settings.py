"""Probe study settings as a resource (stored as provenance with every probe artifact)."""

import dagster as dg

from ta_platform.probing.config import ProbeConfig


class ProbeSettings(dg.ConfigurableResource):
    """``cv_mode``: holdout (train/val/test by problem) or leave_problems_out for small datasets."""

    cv_mode: str = "holdout"
    n_folds: int = 5
    bootstrap_resamples: int = 1000
    mlp_epochs: int = 60
    null_permutations: int = 20
    tripwire_seed: int = 0

    def probe_config(self) -> ProbeConfig:
        return ProbeConfig(cv_mode=self.cv_mode, n_folds=self.n_folds, bootstrap_resamples=self.bootstrap_resamples,
                           mlp_epochs=self.mlp_epochs, null_permutations=self.null_permutations)
