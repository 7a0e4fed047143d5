"""What can be checked of the Kubernetes deployment without a cluster (docs/deploy.md).

Planted faults these catch: an extraction asset losing its GPU request (it would land on a CPU node
and run for days), a CPU step asking for a GPU (it would wait for an accelerator), the image pinning
a torch or Dagster other than pyproject's, and Helm values that no longer parse or lost a key the
deployment relies on.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from ta_platform.defs.k8s import CPU_STEP, GPU_NODE_SELECTOR, K8S_CONFIG_TAG
from ta_platform_tests.e2e import REPO

EXTRACTION_ASSETS = {"sentence_activations", "prompt_activations"}


@pytest.fixture(scope="module")
def k8s_tags() -> dict[str, dict | None]:
    """The parsed ``dagster-k8s/config`` op tag of every asset in the code location (None if absent)."""
    from ta_platform.definitions import defs

    tags = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        raw = assets_def.op.tags.get(K8S_CONFIG_TAG) if hasattr(assets_def, "op") else None
        for key in assets_def.keys:
            tags[key.to_user_string()] = json.loads(raw) if isinstance(raw, str) else raw
    return tags


def _gpu_request(config: dict | None) -> str | None:
    resources = ((config or {}).get("container_config") or {}).get("resources") or {}
    return (resources.get("requests") or {}).get("nvidia.com/gpu")


def test_extraction_assets_request_one_gpu_on_the_gpu_pool(k8s_tags):
    for name in EXTRACTION_ASSETS:
        config = k8s_tags[name]
        assert _gpu_request(config) == "1", (name, config)
        assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert config["pod_spec_config"]["node_selector"] == GPU_NODE_SELECTOR
        assert any(t["key"] == "nvidia.com/gpu" for t in config["pod_spec_config"]["tolerations"])


def test_no_cpu_step_asks_for_a_gpu(k8s_tags):
    from ta_platform.definitions import defs
    from ta_platform.defs.compute import GPU_POOL

    pools = {key.to_user_string(): assets_def.op.pools
             for assets_def in defs.resolve_asset_graph().assets_defs if hasattr(assets_def, "op")
             for key in assets_def.keys}
    gpu_requests = {name for name, config in k8s_tags.items() if _gpu_request(config)}
    assert gpu_requests >= EXTRACTION_ASSETS
    # only steps in the instance's "gpu" pool (the forward passes) may hold an accelerator
    assert all(GPU_POOL in pools[name] for name in gpu_requests), {n: pools[n] for n in gpu_requests}
    assert "nvidia.com/gpu" not in json.dumps(CPU_STEP)


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    pins = {}
    for dep in deps:
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^;,\s]+)", dep)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _dockerfile_args() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", text, flags=re.M))


def test_dockerfile_pins_match_pyproject():
    pins, args = _pyproject_pins(), _dockerfile_args()
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["DAGSTER_VERSION"] == pins["dagster"] == pins["dagster-webserver"]
    assert args["DAGSTER_LIBRARY_VERSION"] == pins["dagster-postgres"]
    # Dagster's libraries are numbered 0.(minor+16) for core 1.minor: 1.13.x <-> 0.29.x
    core_minor = int(pins["dagster"].split(".")[1])
    assert args["DAGSTER_LIBRARY_VERSION"].startswith(f"0.{core_minor + 16}.")
    assert args["TORCH_VARIANT"] == "cpu"  # the default build is the small CPU image
    text = (REPO / "Dockerfile").read_text()
    assert '"torch==${TORCH_VERSION}"' in text and "${TORCH_VARIANT}" in text  # the variant picks the index
    assert "-m\", \"ta_platform.definitions\"" in text


def test_helm_values_parse_and_set_what_the_deployment_needs():
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "ta_platform.definitions"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["TA_STORAGE"].startswith("s3://")
    assert env["TA_K8S_EXECUTOR"] == "1"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    run_pod = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert run_pod["podSpecConfig"]["nodeSelector"] == CPU_STEP["pod_spec_config"]["node_selector"]
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert "runs" not in values.get("concurrency", {})  # run limits live in the run coordinator only


def test_cluster_executor_is_off_unless_asked(monkeypatch):
    from ta_platform.defs.k8s import cluster_executor

    monkeypatch.delenv("TA_K8S_EXECUTOR", raising=False)
    assert cluster_executor() is None
    monkeypatch.setenv("TA_K8S_EXECUTOR", "1")
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):  # asked for, but dagster-k8s is only in the cluster image
            cluster_executor()
    else:
        assert cluster_executor().name == "ta_k8s_job_executor"
