"""The asset graph page of `dagster dev`, rendered by a real browser: every asset's name is drawn.

Why a browser: the GraphQL API can answer while the page itself stays blank (a front-end error, a
dialog over the graph). Headless Chromium (Debian package `chromium`; `.ci/run` installs it) loads
the "Lineage" page with every group expanded, dumps the DOM once its scripts have run, and saves a
screenshot under the test's tmp folder for a person to look at.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from ta_platform_tests.e2e import REPO, readme_dagster_dev

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; "
                                                ".ci/run installs it)"),
    pytest.mark.skipif(not (REPO / ".venv/bin/activate").exists(),
                       reason="no .venv/bin/activate: run scripts/setup_env.sh first (the README's set-up)"),
]

# Large enough that the whole graph fits at a zoom where nodes draw full names (zoomed out, the UI
# middle-truncates them) and the screenshot shows every group.
WINDOW = "3600,5200"  # eight groups since the backtracking, needle and OOD studies


def defined_assets() -> dict[str, str]:
    """Asset name -> group name, from the definitions (not a copied list)."""
    from ta_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}


def asset_graph_url(base: str, groups: set[str]) -> str:
    """The global lineage page with every group expanded (the UI's ``expanded`` query parameter)."""
    expanded = ",".join(f"global@global:{group}" for group in sorted(groups))
    return f"{base}/asset-groups?{urllib.parse.urlencode({'expanded': expanded})}"


def render(url: str, out: Path) -> str:
    """Load ``url`` in headless Chromium with a fresh profile; save a screenshot; return the DOM."""
    screenshot = out / "asset_graph.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={out / 'chromium-profile'}", f"--window-size={WINDOW}",
         "--virtual-time-budget=20000", f"--screenshot={screenshot}", "--dump-dom", url],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot at {screenshot}"
    return result.stdout


def test_asset_graph_page_draws_every_asset_name(tmp_path):
    assets = defined_assets()
    assert assets, "ta_platform.definitions defines no assets"
    with readme_dagster_dev(tmp_path / "storage") as dev:
        dom = render(asset_graph_url(dev.url, set(assets.values())), tmp_path)
    (tmp_path / "asset_graph.html").write_text(dom)
    assert "Global asset lineage" in dom, dom[-2000:]
    # The name is an element's whole text in a graph node, so a truncated "sente…_activations" misses.
    missing = sorted(name for name in assets if f">{name}<" not in dom)
    assert not missing, f"asset names not drawn: {missing}; screenshot: {tmp_path / 'asset_graph.png'}"
    assert "Join the Dagster community" not in dom, "a sign-up dialog covers the graph (config/dagster.yaml nux)"
