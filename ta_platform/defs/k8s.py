"""Where each step runs on Kubernetes: extraction on the GPU pool, everything else on CPU nodes.

Why tags on the assets rather than cluster settings alone: which steps need an accelerator is a fact
about the code (the two activation assets are the only forward passes), so it travels with the code
location image. Dagster's ``dagster-k8s/config`` tag is read by the ``k8s_job_executor`` (one pod per
step) and by the ``K8sRunLauncher`` (one pod per run); on a laptop it is an inert tag. The node
labels and taints are the conventional ones (``deploy/helm/values.yaml`` and ``docs/deploy.md``
say how a cluster provides them); a lab with other labels edits them here, once.
"""

from __future__ import annotations

import os

K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_NODE_SELECTOR = {"ta-platform/pool": "gpu"}
CPU_NODE_SELECTOR = {"ta-platform/pool": "cpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

# One accelerator per extraction step: one model is resident at a time (defs/compute.py), and the
# instance's "gpu" pool already serialises extractions on one device; more GPUs = more pods.
GPU_STEP = {
    "container_config": {"resources": {
        "requests": {"cpu": "4", "memory": "48Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "96Gi", "nvidia.com/gpu": "1"},
    }},
    "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
}
CPU_STEP = {
    "container_config": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}},
    "pod_spec_config": {"node_selector": CPU_NODE_SELECTOR},
}

GPU_OP_TAGS = {K8S_CONFIG_TAG: GPU_STEP}


def cluster_executor():
    """``k8s_job_executor`` (a pod per step, so op tags choose the pool) when ``TA_K8S_EXECUTOR=1``.

    None elsewhere (Dagster's default executor). Imported lazily: dagster-k8s is installed in the
    cluster image only (Dockerfile), never needed to run or test the platform locally.
    """
    if os.environ.get("TA_K8S_EXECUTOR", "") not in ("1", "true"):
        return None
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured({"step_k8s_config": CPU_STEP}, name="ta_k8s_job_executor")
