"""Probe study settings as a resource (stored as provenance with every probe artifact)."""

import dagster as dg

from ta_platform.probing.config import ProbeConfig

DEFAULT_PROBES = ["position_baseline", "text_baseline", "linear_probe"]


class ProbeSettings(dg.ConfigurableResource):
    """``cv_mode``: auto (holdout when the test split would hold >= ``min_test_problems`` problems,
    else leave-problems-out), holdout, or leave_problems_out. ``probes``: which probes run. The
    default is the linear probe; ``activations_plus_position`` and ``mlp_probe`` are on request
    (under leave-problems-out the MLP alone costs ~3x the rest together, and each extra candidate is
    one more choice the validation split must make). The position and text baselines always run
    beside the probes (once per model and setting: they read no activations)."""

    cv_mode: str = "auto"
    n_folds: int = 5
    min_test_problems: int = 10
    probes: list[str] = DEFAULT_PROBES
    bootstrap_resamples: int = 1000
    mlp_epochs: int = 60
    null_permutations: int = 20
    tripwire_seed: int = 0

    def probe_config(self) -> ProbeConfig:
        probes = list(dict.fromkeys(["position_baseline", "text_baseline", *self.probes]))
        return ProbeConfig(cv_mode=self.cv_mode, n_folds=self.n_folds, min_test_problems=self.min_test_problems,
                           probes=tuple(probes), bootstrap_resamples=0, mlp_epochs=self.mlp_epochs,
                           null_permutations=self.null_permutations)
