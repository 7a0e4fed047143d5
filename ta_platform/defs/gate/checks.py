"""The release gate: one asset check, on ``scaling_summary``, over the latest evaluation of every other check.

Why built by a factory: the gate must know every check of the code location, and only
``definitions.py`` sees them all; it passes their keys in, so no module here imports
``ta_platform.definitions`` (which imports this one). The verdict itself is plain Python
(``ta_platform.common.release_gate``); ``instance_reader`` collects the evaluations.
"""

from collections.abc import Iterable, Sequence

import dagster as dg

from ta_platform.common.release_gate import evaluate_gate
from ta_platform.defs.gate.instance_reader import latest_evaluations, wait_for_in_flight_evaluations

GATE_CHECK_NAME = "release_gate"
GATED_ASSET = "scaling_summary"


def build_release_gate(gated_keys: Sequence[dg.AssetCheckKey]) -> dg.AssetChecksDefinition:
    """The release-gate check over ``gated_keys``: every other check of the code location.

    Why a factory: the gate must know every check, and only ``definitions.py`` sees them all; it
    passes their keys in, so this module never imports ``ta_platform.definitions`` (which imports it).
    """
    keys = tuple(sorted((key for key in gated_keys if key.name != GATE_CHECK_NAME), key=lambda k: k.to_user_string()))

    @dg.asset_check(asset=GATED_ASSET, name=GATE_CHECK_NAME,
                    description="Release gate: the latest evaluation of every other check passed (none missing).")
    def release_gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from ta_platform.studies.anchor_summary import gate_line, restamp_reports

        verdict, n_checks = current_gate_verdict(context.instance, keys, wait=True, own_run_id=context.run.run_id,
                                                 log=context.log.info)
        context.log.info(verdict.summary())
        line = gate_line(verdict, n_checks)
        restamped = restamp_reports(line, context.run.run_id)  # the report states the final verdict
        return dg.AssetCheckResult(passed=verdict.passed, metadata={
            "summary": verdict.summary(), "gate": line, "failing": verdict.failing, "missing": verdict.missing,
            "warnings": verdict.warnings, "n_checks": n_checks, "report_restamped": restamped is not None,
        })

    return release_gate


def gated_check_keys(definitions: Iterable[object]) -> list[dg.AssetCheckKey]:
    """The keys of every check declared by these asset and check definitions, except the gate itself."""
    keys = {key for definition in definitions for key in getattr(definition, "check_keys", ())}
    return sorted((key for key in keys if key.name != GATE_CHECK_NAME), key=lambda k: k.to_user_string())


def current_gate_verdict(instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], *,
                         wait: bool = False, own_run_id: str | None = None, log=print):
    """The gate over ``check_keys`` (the gate itself excluded): (verdict, number of checks).

    ``wait``: first wait for other runs still evaluating some of these checks (named in ``log``): the
    FINAL verdict (the release gate, the CLI's) read in the middle of another run's re-materialisation
    would be a false red. Progress readings (a summary's pointer, the headline table) do not wait.
    """
    keys = [key for key in check_keys if key.name != GATE_CHECK_NAME]
    if wait:
        wait_for_in_flight_evaluations(instance, keys, own_run_id=own_run_id, log=log)
    return evaluate_gate(latest_evaluations(instance, keys)), len(keys)
