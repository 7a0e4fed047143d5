"""Probes of thought-anchor labels from activations: baselines, metrics, bootstrap, tripwires.

No Dagster here. ``run_probe_suite`` evaluates every probe on one (model, layer, setting) slice for
one seed; ``run_tripwires`` checks that the data and the pipeline can be trusted. See
``docs/probing.md`` for what each probe, metric and tripwire does and why its threshold is what it is.
"""

from .bootstrap import MarginInterval, bootstrap_margins
from .config import PROBE_NAMES, ProbeConfig
from .features import ProbeInputs, position_features
from .metrics import (
    auroc,
    importance_target,
    pr_auc,
    prevalence,
    ranking_metrics,
    spearman,
    top_k_per_problem,
)
from .models import Probe, ProbeSpec, Selection, probe_specs, select_and_fit
from .report import best_probe_cells, markdown_matrix, matrix_png
from .splits import leave_problems_out_folds, problem_level_split, rows_split
from .suite import ProbeSuiteResult, labelled_inputs, resolve_split, run_probe_suite
from .tripwires import (
    TripwireResult,
    constant_activations,
    data_integrity_tripwires,
    duplicate_embeddings,
    finite_activations,
    memorisation,
    misaligned_rows,
    planted_signal,
    random_label_null,
    run_tripwires,
    split_leakage,
)

__all__ = [
    "PROBE_NAMES",
    "MarginInterval",
    "Probe",
    "ProbeConfig",
    "ProbeInputs",
    "ProbeSpec",
    "ProbeSuiteResult",
    "Selection",
    "TripwireResult",
    "auroc",
    "best_probe_cells",
    "bootstrap_margins",
    "constant_activations",
    "data_integrity_tripwires",
    "duplicate_embeddings",
    "finite_activations",
    "importance_target",
    "labelled_inputs",
    "leave_problems_out_folds",
    "markdown_matrix",
    "matrix_png",
    "memorisation",
    "misaligned_rows",
    "planted_signal",
    "position_features",
    "pr_auc",
    "prevalence",
    "probe_specs",
    "problem_level_split",
    "random_label_null",
    "ranking_metrics",
    "resolve_split",
    "rows_split",
    "run_probe_suite",
    "run_tripwires",
    "select_and_fit",
    "spearman",
    "split_leakage",
    "top_k_per_problem",
]
