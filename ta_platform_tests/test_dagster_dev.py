"""The README's "Using Dagster directly": `source .venv/bin/activate` then `dagster dev` serves the UI.

Why these checks: the activate script once exported DAGSTER_MODULE_NAME, which `dagster dev` hands
to its webserver next to workspace.yaml; the webserver exited at once and the UI never came up
while `dagster dev` kept running. The server here is started exactly as the README says, with that
stale variable planted in the environment (a shell that sourced the old script), so the activate
script must clear it. The UI's code location must have the name the command lines record, so runs
from every entry point share one history, and the start must print no warning.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from ta_platform.common.instance import CODE_LOCATION_NAME, DEFINITIONS_MODULE
from ta_platform_tests.e2e import REPO, readme_dagster_dev

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / ".venv/bin/activate").exists(),
                       reason="no .venv/bin/activate: run scripts/setup_env.sh first (the README's set-up)"),
]

LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message }
    ... on RepositoryLocation { repositories { name } } } } } } }"""
ASSET_NODES = "{ assetNodes { assetKey { path } } }"
JOB_RUNS = """query($location: String!, $repository: String!, $job: String!) {
  pipelineOrError(params: {repositoryLocationName: $location, repositoryName: $repository, pipelineName: $job}) {
    __typename ... on Pipeline { runs { runId } } } }"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    storage = tmp_path_factory.mktemp("dagster_dev_storage")
    with readme_dagster_dev(storage, DAGSTER_MODULE_NAME=DEFINITIONS_MODULE) as server:
        yield server


def defined_asset_keys() -> set[tuple[str, ...]]:
    from ta_platform.definitions import defs

    return {tuple(key.path) for key in defs.resolve_asset_graph().get_all_asset_keys()}


def test_ui_loads_the_code_location_under_the_cli_name(dev):
    (entry,) = dev.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
    loaded = entry["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", loaded
    assert entry["name"] == CODE_LOCATION_NAME == DEFINITIONS_MODULE


def test_asset_graph_lists_every_defined_asset(dev):
    served = {tuple(node["assetKey"]["path"]) for node in dev.graphql(ASSET_NODES)["assetNodes"]}
    defined = defined_asset_keys()
    assert defined, "ta_platform.definitions defines no assets"
    assert served == defined


def test_start_prints_no_warning(dev):
    text = dev.log.read_text()
    assert "Serving dagster-webserver" in text, text
    start = text[: text.index("Serving dagster-webserver")]
    assert not re.search(r"warning", start, re.IGNORECASE), start


def test_cli_runs_share_the_ui_history(dev):
    """A `ta-platform materialize` run appears on its job's Runs tab in the UI (one history)."""
    result = subprocess.run(
        ["bash", "-c", "source .venv/bin/activate && exec ta-platform materialize --stage gate"],
        cwd=REPO, env=dev.env, capture_output=True, text=True, timeout=600)
    match = re.search(r"\[gate\] run ([0-9a-f-]{36})", result.stdout)
    assert match, result.stdout + result.stderr
    (entry,) = dev.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
    (repository,) = entry["locationOrLoadError"]["repositories"]
    runs = dev.graphql(JOB_RUNS, {"location": entry["name"], "repository": repository["name"],
                                  "job": "gate_job"})["pipelineOrError"]
    assert runs["__typename"] == "Pipeline", runs
    assert match.group(1) in {run["runId"] for run in runs["runs"]}, (
        "the CLI's run is not filed under the UI's code location: ta_platform/cli/materialize.py must tag "
        "its runs with ta_platform.common.instance.code_location_tags()")
