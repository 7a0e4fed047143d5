"""Preference study: task pool, judges, active pair sampling, Thurstonian utilities, utility probes.

Modules (one job each; none imports Dagster, torch only lazily): ``tasks`` (pool + disjointness),
``judges`` (HF logit judge, simulated judge, planted utilities), ``active_learning`` (pair sampling),
``thurstone`` (MAP fit + validation + metrics), ``outcomes_io`` (CSV/Parquet), ``content`` (text
baseline features), ``utility_probes`` (Ridge probes), ``summary`` (table + PNG), ``simulate`` and
``reference_fit`` (benchmark support). See docs/preferences.md.
"""
