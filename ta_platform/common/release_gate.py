"""The release gate's verdict from the latest evaluation of every gated check.

Why outside Dagster's blocking checks: a blocking check only stops later steps of the same run,
so a failure in yesterday's activations run would not stop today's summary run. The gate instead
reads the latest evaluation of every check from the instance and fails if any ERROR-severity
check failed or any check was never evaluated (or was skipped because its asset failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CheckEvaluation:
    check: str  # "asset_key:check_name"
    status: str  # "passed" | "failed" | "missing" | "skipped" | "planned"
    severity: str = "ERROR"
    run_id: str = ""
    reason: str = ""


@dataclass
class GateVerdict:
    passed: bool
    failing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.passed:
            return f"gate passes ({len(self.warnings)} warning(s))"
        return f"gate FAILS: {len(self.failing)} failing, {len(self.missing)} missing check evaluation(s)"


def evaluate_gate(evaluations: list[CheckEvaluation]) -> GateVerdict:
    verdict = GateVerdict(passed=True)
    for item in sorted(evaluations, key=lambda e: e.check):
        label = f"{item.check}" + (f" ({item.reason})" if item.reason else "")
        if item.status == "passed":
            continue
        if item.status == "failed" and item.severity == "WARN":
            verdict.warnings.append(label)
        elif item.status == "failed":
            verdict.failing.append(label)
        else:
            verdict.missing.append(f"{label} [{item.status}]")
    verdict.passed = not verdict.failing and not verdict.missing
    return verdict
