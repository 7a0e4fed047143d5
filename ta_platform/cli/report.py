"""``ta-platform report``: (re)build ``storage/reports/index.html`` from the stores and the gate.

The verdict is read from the project's Dagster instance exactly as ``ta-platform gate`` reads it (all
studies, and each study's own checks); the page itself is built by ``ta_platform.reports`` (no Dagster).
``ta-platform materialize`` calls ``write_index`` after it reports the gate, so the page is current after
every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--open", action="store_true", help="print the page as a file:// URL to open")


def run(args: argparse.Namespace) -> int:
    from ta_platform.common.instance import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        path = write_index(instance)
    print(path.resolve().as_uri() if args.open else path)
    return 0


def write_index(instance) -> Path:
    """Gather the gate (overall and per study), every study's section and the provenance; write the page."""
    import pandas as pd

    from ta_platform.common.paths import storage_root
    from ta_platform.definitions import GATED_CHECK_KEYS, STUDY_CHECK_KEYS, STUDY_STAGES
    from ta_platform.defs.compute import ComputeResource
    from ta_platform.reports.collect import collect_provenance, collect_sections, write_report
    from ta_platform.store.metadata_store import MetadataStore

    storage, store = storage_root(), MetadataStore()
    gates = {name: _gate_view(instance, keys, f"study {name}") for name, keys in STUDY_CHECK_KEYS.items()}
    overall = _gate_view(instance, GATED_CHECK_KEYS, "all studies")
    models = pd.DataFrame([{"model": key, "source": spec.source, "model_id": spec.model_id, "revision": spec.revision,
                            "layers": ", ".join(spec.layer_keys()), "reads traces of": ", ".join(spec.trace_models)}
                           for key, spec in sorted(ComputeResource().registry().items())])
    sections = collect_sections(list(STUDY_STAGES), store, storage, gates)
    return write_report(storage, overall, sections, collect_provenance(store, storage, models))


def _gate_view(instance, keys, scope: str):
    from ta_platform.defs.gate.checks import current_gate_verdict
    from ta_platform.reports.html import GateView

    verdict, n_checks = current_gate_verdict(instance, keys)
    return GateView(scope, verdict.passed, verdict.summary(), list(verdict.failing), list(verdict.missing),
                    list(verdict.warnings), n_checks)
