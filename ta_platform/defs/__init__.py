"""Dagster wiring, one sub-package per domain; the science lives outside ``defs``."""
