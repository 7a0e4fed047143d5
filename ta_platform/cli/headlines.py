"""The closing table of ``ta-platform materialize``: each study's headline and its gate verdict.

Why read the instance rather than the studies' files: the numbers are the ``headline_*`` metadata the
summary assets recorded (``defs/summary_metadata.py``), and the verdict is the release gate's reading
of the latest check evaluations: the same two sources the UI shows, so the terminal cannot disagree.
"""

from __future__ import annotations

import dagster as dg

# study -> its summary asset (the one that records the headline), in the order the main job runs them
SUMMARY_ASSETS: dict[str, str] = {
    "anchors": "scaling_summary",
    "preferences": "preference_summary",
    "backtracking": "backtracking_summary",
    "needle": "needle_summary",
    "ood": "ood_results",
    "function_tags": "function_tag_probes",
}


def _value(metadata: dict, key: str):
    entry = metadata.get(key)
    return None if entry is None else entry.value


def _number(value) -> str:
    return "" if value is None else f"{value:+.3f}"


def headline_row(instance: dg.DagsterInstance, asset: str) -> tuple[str, str, str, str] | None:
    """(what, best cell, value, interval) from the asset's latest materialisation; None if never made."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return None
    metadata = dict(event.asset_materialization.metadata)
    value = _value(metadata, "headline_value")
    if value is None:
        return ("(no headline recorded)", "", "", "")
    low, high = _value(metadata, "headline_low"), _value(metadata, "headline_high")
    interval = f"[{_number(low)}, {_number(high)}]" if low is not None and high is not None else ""
    return (str(_value(metadata, "headline") or ""), str(_value(metadata, "headline_cell") or ""),
            _number(value), interval)


def study_verdict(instance: dg.DagsterInstance, keys) -> str:
    """``PASS`` or ``FAIL (2 failing, 1 missing)`` over these checks (the release gate's own reading)."""
    from ta_platform.defs.gate.checks import current_gate_verdict

    if not keys:
        return "-"
    verdict, n_checks = current_gate_verdict(instance, keys)
    if verdict.passed:
        return f"PASS ({n_checks} checks)"
    return f"FAIL ({len(verdict.failing)} failing, {len(verdict.missing)} missing of {n_checks})"


def headline_table(instance: dg.DagsterInstance, studies: list[str], study_keys: dict[str, list]) -> list[str]:
    """The table's lines: one per study that has a summary asset (never materialised: said so)."""
    header = ("study", "headline", "best cell", "value", "interval", "gate")
    rows = []
    for study in studies:
        asset = SUMMARY_ASSETS.get(study)
        if asset is None:
            continue
        found = headline_row(instance, asset) or ("(summary not materialised)", "", "", "")
        rows.append((study, *found, study_verdict(instance, study_keys.get(study, []))))
    if not rows:
        return []
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    return [line(header), line(tuple("-" * w for w in widths)), *(line(row) for row in rows)]
