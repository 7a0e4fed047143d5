"""``storage/reports/index.html``: the gate verdict first (failing and missing checks listed), a section per
study with its tables and figures, provenance; built from the stores, written atomically; and, opened in
headless Chromium after a real study run, the verdict is shown, every image loads and every study has a
section."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from ta_platform.reports.collect import SOURCES, collect_sections, write_report
from ta_platform.reports.html import GateView, Section, render_report
from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import run_cli
from ta_platform_tests.study_runs import study_alone

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def test_failing_and_missing_checks_come_before_any_study_and_text_is_escaped():
    gate = GateView("all studies", False, "gate FAILS", failing=["probes:metrics_finite"],
                    missing=["needle_probes:planted_signal"], n_checks=12)
    sections = [Section("anchors", "Thought anchors", tables=[("t", pd.DataFrame({"text": ["<script>x</script>"]}))],
                        images=[("fig", _png())]),
                Section("needle", "Needle")]
    page = render_report(gate, sections, {"code version": "abc"}, "now")
    first_section = page.index('<section id="study-')
    assert page.index("FAILING</b> probes:metrics_finite") < first_section
    assert page.index("MISSING</b> needle_probes:planted_signal") < first_section
    assert "FAIL, NOT RELEASED" in page and "<script>x" not in page and "&lt;script&gt;x" in page
    assert 'id="study-needle"' in page and "ta-platform materialize --study needle" in page  # the empty one says so
    assert page.count("data:image/png;base64,") == 1


def test_sections_read_the_metadata_store_and_the_reports_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TA_STORAGE", str(tmp_path))
    store = MetadataStore(tmp_path / "metadata.duckdb")
    store.replace_slice("ood_results", pd.DataFrame([{"experiment": "e1", "features": "activations", "pearson_r": 0.5,
                                                      "spearman_r": 0.4, "sign_agreement": 0.9, "p_value": 0.01,
                                                      "n": 20}]))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "ood_scatter.png").write_bytes(_png())
    sections = {s.key: s for s in collect_sections(["ood", "needle", "unknown_study"], store, tmp_path)}
    assert sections["ood"].tables[0][1]["pearson_r"].tolist() == [0.5]
    assert [caption for caption, _ in sections["ood"].images] == ["ood_scatter"]
    assert sections["needle"].empty and sections["unknown_study"].empty  # a section all the same
    path = write_report(tmp_path, GateView("all", True, "gate passes"), list(sections.values()), {})
    assert path == tmp_path / "reports" / "index.html" and not list((tmp_path / "reports").glob("*.tmp*"))


def test_every_study_has_a_report_source():
    from ta_platform.definitions import STUDY_STAGES

    assert set(STUDY_STAGES) <= set(SOURCES), f"add a reports.collect.SOURCES entry for {set(STUDY_STAGES) - set(SOURCES)}"


# --- the page in a browser, after a real study run --------------------------------------------------

# Runs on a copy of the page, after load: the verdict's text, each image's natural width, each section's id.
PROBE_SCRIPT = """<script>window.addEventListener('load', () => {
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({
    verdict: (document.getElementById('verdict') || {}).innerText || '',
    images: Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1),
    sections: Array.from(document.querySelectorAll('section.study')).map(s => s.id)});
  document.body.appendChild(out);});</script>"""


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    """``ta-platform materialize --study preferences`` (it writes a figure and tables) in an empty storage:
    the command writes index.html after its gate; ``ta-platform report`` rebuilds it."""
    run = study_alone(tmp_path_factory, "preferences")  # shared with test_studies_standalone.py in one process
    assert run.result.returncode == 0, run.result.stdout[-4000:] + run.result.stderr[-4000:]
    page = run.storage / "reports" / "index.html"
    first = page.stat().st_mtime_ns
    rebuilt = run_cli(["ta-platform", "report"], run.env)
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip().endswith("index.html"), rebuilt.stderr[-3000:]
    assert page.stat().st_mtime_ns >= first
    return run.storage, page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; "
                                             ".ci/run installs it)")
def test_the_page_in_chromium_shows_the_verdict_every_image_and_every_study(built_report, tmp_path):
    from ta_platform.definitions import STUDY_STAGES

    storage, page = built_report
    probe = tmp_path / "probed.html"
    probe.write_text(page.read_text().replace("</body>", PROBE_SCRIPT + "</body>"))
    screenshot = tmp_path / "report.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1400,3000", "--virtual-time-budget=10000", f"--screenshot={screenshot}", "--dump-dom",
         probe.as_uri()], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stdout[-3000:]
    seen = json.loads(html.unescape(found.group(1)))
    # the whole-project gate: only the preference study ran, so the other studies' checks are missing
    assert seen["verdict"].startswith("Release gate (all studies): FAIL") and "MISSING" in seen["verdict"], seen
    assert seen["images"] and all(width > 0 for width in seen["images"]), seen["images"]
    assert seen["sections"] == [f"study-{name}" for name in STUDY_STAGES], seen["sections"]
    text = page.read_text()
    assert "Gate (4 checks): gate passes" in text.split('id="study-preferences"')[1].split("</section>")[0]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy2(screenshot, storage / "reports" / "index_screenshot.png")  # for a person to look at
