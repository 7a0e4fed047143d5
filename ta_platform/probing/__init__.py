"""Probes of thought-anchor labels from activations: baselines, metrics, bootstrap, tripwires.

No Dagster here. ``run_probe_suite`` evaluates every probe on one (model, layer, setting) slice for
one seed; ``run_tripwires`` checks that the data and the pipeline can be trusted. See
``docs/probing.md`` for what each probe, metric and tripwire does and why its threshold is what it is.
"""

# Deliberately no re-exports: importing a submodule (e.g. probing.config from the Dagster code
# location) must not pay for scikit-learn.
