"""One self-contained HTML page from frames and PNG bytes: the gate verdict, each study, provenance.

Why one file with images as data URIs: a researcher opens, shares or archives ``index.html`` alone and
compares it with last week's; nothing beside it can go missing. Plain Python (no Dagster): the caller
reads the gate and the stores and passes plain values in.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

MAX_ROWS = 60  # rows shown per table; the full table stays in the metadata store
MAX_TEXT = 60  # characters shown of a text cell


@dataclass(frozen=True)
class GateView:
    """The verdict as the page shows it: ``scope`` (all studies, or one study), failing/missing first."""

    scope: str
    passed: bool
    summary: str
    failing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_checks: int = 0


@dataclass(frozen=True)
class Section:
    """One study's part of the page; an empty section says that the study has no results in this storage."""

    key: str
    title: str
    gate: GateView | None = None
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.tables and not self.images


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
.verdict{padding:1em;border-radius:6px;font-size:1.2em}.pass{background:#e3f5e1}.fail{background:#fbe3e3}
.study-gate{font-weight:600}.study-gate.fail{color:#a00}.study-gate.pass{color:#070}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px}
.table-scroll{overflow-x:auto;max-width:100%}img{max-width:100%;border:1px solid #ddd}.empty{color:#777;font-style:italic}section{margin-top:2em}
"""


def render_report(gate: GateView, sections: Sequence[Section], provenance: dict[str, object], generated: str) -> str:
    """The whole page: verdict (failing and missing checks listed first), one section per study, provenance."""
    nav = " | ".join(f'<a href="#study-{html.escape(s.key)}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ta-platform report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>ta-platform report</h1><p>Generated {html.escape(generated)}</p>",
        _verdict(gate),
        f"<nav>{nav}</nav>",
        *(_section(s) for s in sections),
        _provenance(provenance),
        "</body></html>",
    ]
    return "\n".join(parts)


def _verdict(gate: GateView) -> str:
    state = "pass" if gate.passed else "fail"
    items = [*(f"<li><b>FAILING</b> {html.escape(c)}</li>" for c in gate.failing),
             *(f"<li><b>MISSING</b> {html.escape(c)}</li>" for c in gate.missing),
             *(f"<li>warning: {html.escape(c)}</li>" for c in gate.warnings)]
    listed = f"<ul>{''.join(items)}</ul>" if items else ""
    return (f'<div id="verdict" class="verdict {state}"><b>Release gate ({html.escape(gate.scope)}): '
            f'{"PASS" if gate.passed else "FAIL, NOT RELEASED"}</b> &mdash; {html.escape(gate.summary)} over '
            f"{gate.n_checks} checks{listed}</div>")


def _section(section: Section) -> str:
    parts = [f'<section id="study-{html.escape(section.key)}" class="study"><h2>{html.escape(section.title)}</h2>']
    if section.gate is not None:
        state = "pass" if section.gate.passed else "fail"
        # a study with no results: its checks are all missing, the summary says how many
        problems = [*section.gate.failing, *([] if section.empty else section.gate.missing)]
        detail = f": {html.escape('; '.join(problems))}" if problems else ""
        parts.append(f'<p class="study-gate {state}">Gate ({section.gate.n_checks} checks): '
                     f"{html.escape(section.gate.summary)}{detail}</p>")
    if section.empty:
        parts.append('<p class="empty">No results for this study in this storage (run '
                     f"<code>ta-platform materialize --study {html.escape(section.key)}</code>).</p>")
    parts += [f"<p>{html.escape(note)}</p>" for note in section.notes]
    for caption, frame in section.tables:
        shown, common = _split_constant_text(frame.head(MAX_ROWS))
        more = f" (first {MAX_ROWS} of {len(frame)} rows)" if len(frame) > MAX_ROWS else ""
        parts.append(f"<h3>{html.escape(caption)}{more}</h3>")
        parts += [f'<p class="common">{html.escape(name)}: {html.escape(str(value))}</p>' for name, value in common]
        # wide tables scroll inside their own box: the page (verdict, figures) keeps the window's width
        parts.append('<div class="table-scroll">'
                     + shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="", border=0) + "</div>")
    for caption, png in section.images:
        encoded = base64.b64encode(png).decode()
        parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "\n".join([*parts, "</section>"])


def _split_constant_text(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, object]]]:
    """Text columns with one value on every row (a unit, a statistic's definition) said once above the
    table instead of in every row, so a long definition does not make every row tall."""
    constant = [c for c in frame.columns if len(frame) > 1 and frame[c].dtype == object
                and frame[c].astype(str).nunique() == 1]
    shown = frame.drop(columns=constant).copy()
    for column in shown.select_dtypes(include="object").columns:  # a long text cell is cut (the store keeps it)
        shown[column] = shown[column].map(lambda v: f"{v[:MAX_TEXT]}..." if isinstance(v, str) and len(v) > MAX_TEXT
                                          else v)
    return shown, [(c, frame[c].iloc[0]) for c in constant]


def _provenance(provenance: dict[str, object]) -> str:
    rows = []
    for name, value in provenance.items():
        if isinstance(value, pd.DataFrame):
            cell = value.to_html(index=False, border=0) if len(value) else "none"
        elif isinstance(value, list | tuple):
            cell = "<br>".join(html.escape(str(v)) for v in value) or "none"
        else:
            cell = html.escape(str(value))
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{cell}</td></tr>")
    return f'<section id="provenance"><h2>Provenance</h2><table>{"".join(rows)}</table></section>'
