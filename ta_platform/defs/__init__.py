"""Dagster wiring, one sub-package per domain; the science lives outside ``defs``."""

import warnings

import dagster as dg

# Single-run backfill policies (beta in Dagster 1.13) are what make "all layers of a model from one
# forward pass" and "a seed range in one run" possible; their beta warning is noise for users.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
