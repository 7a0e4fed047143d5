"""``ProbeConfig``: every knob of the probe suite and the tripwires, frozen, with provenance.

One object instead of scattered defaults so that a stored result can say exactly how it was made
(``as_dict()`` goes into the run record) and so that a config change is a visible diff.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROBE_NAMES = (
    "position_baseline",
    "text_baseline",
    "linear_probe",
    "mlp_probe",
    "activations_plus_position",
)


CV_MODES = ("auto", "holdout", "leave_problems_out")


@dataclass(frozen=True)
class ProbeConfig:
    """Knobs of ``run_probe_suite`` and ``run_tripwires``; defaults are the reported configuration."""

    # --- splits -------------------------------------------------------------------------------
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_source: str = "seed"  # "seed": problem_level_split(seed); "stored": the frame's data_split
    # "auto": holdout when its test split would hold >= min_test_problems problems, else
    # leave_problems_out (with ~20 problems a 15% test split is 3 problems: 10 distinct bootstrap draws)
    cv_mode: str = "auto"  # "auto", "holdout" (train/val/test) or "leave_problems_out"
    n_folds: int = 5  # leave_problems_out only
    min_test_problems: int = 10
    # --- probes -------------------------------------------------------------------------------
    probes: tuple[str, ...] = PROBE_NAMES
    baseline: str = "position_baseline"  # margins are taken over this probe (none if not in probes)
    l2_c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)  # logistic C = 1/L2, strongest first; on val
    logistic_max_iter: int = 2000
    text_max_features: int = 20_000
    mlp_hidden: tuple[int, ...] = (32,)
    mlp_epochs: int = 60  # fixed: no early stopping, no hidden validation slice
    mlp_alpha_grid: tuple[float, ...] = (1.0, 1e-2)  # MLP L2 strength, strongest first; chosen on val
    mlp_batch_size: int = 128
    mlp_learning_rate: float = 1e-3
    refit_on_train_val: bool = True  # after choosing the hyperparameter on val, refit on train + val
    # --- metrics ------------------------------------------------------------------------------
    k_list: tuple[int, ...] = (5, 10)
    importance_mode: str = "absolute"  # Spearman against |CI| ("absolute") or CI ("signed")
    bootstrap_resamples: int = 1000
    ci_level: float = 0.95
    # --- tripwires ----------------------------------------------------------------------------
    memorise_min_pr_auc: float = 0.999
    null_permutations: int = 20
    null_band_sigmas: float = 4.0  # permutation_null: mean null PR-AUC <= random mean + this many SEs
    null_band_floor: float = 0.02  # ... or + this absolute slack, whichever is larger
    null_quantile: float = 0.95  # signal_beats_null: real PR-AUC must exceed this null quantile
    null_position_bins: int = 5  # the null permutes labels within these relative-position bins of a problem
    null_reference_draws: int = 500  # within-problem shuffles per null run that calibrate both checks
    planted_noise_sd: float = 0.1  # planted features = label + N(0, sd^2), ceil(sqrt(dims)) of them
    planted_min_pr_auc: float = 0.95

    def __post_init__(self) -> None:
        unknown = sorted(set(self.probes) - set(PROBE_NAMES))
        if unknown:
            raise ValueError(f"unknown probes {unknown}; known: {PROBE_NAMES}")
        if self.baseline not in PROBE_NAMES:
            raise ValueError(f"unknown baseline {self.baseline!r}")
        if self.split_source not in ("seed", "stored"):
            raise ValueError(f"split_source must be 'seed' or 'stored', not {self.split_source!r}")
        if self.cv_mode not in CV_MODES:
            raise ValueError(f"cv_mode must be one of {CV_MODES}, not {self.cv_mode!r}")
        if self.importance_mode not in ("absolute", "signed"):
            raise ValueError(f"importance_mode must be 'absolute' or 'signed', not {self.importance_mode!r}")

    def scheme_for(self, n_problems: int) -> str:
        """The evaluation scheme used on a slice of ``n_problems`` problems (``auto`` resolved)."""
        if self.cv_mode != "auto":
            return self.cv_mode
        n_test = int(round(self.fractions[2] * n_problems))
        return "holdout" if n_test >= self.min_test_problems else "leave_problems_out"

    def as_dict(self) -> dict:
        """JSON-ready provenance record (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }
