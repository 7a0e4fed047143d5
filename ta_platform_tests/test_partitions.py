"""Every activation partition key names a layer its own model has, under every packaged profile.

The bug this guards: a model x layer grid took the union of all models' layers, so under the paper
profile the 32-layer Llama-8B got an L36 partition and the main job's full range asked it for a
layer it does not have. The definitions are loaded in a fresh interpreter per profile (partitions are
built at import time from TA_MODEL_PROFILE); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ta_platform.defs.activations.partitions import requested_layers
from ta_platform.extraction.registry import load_registry, parse_partition_key

PROBE = """
import json
import ta_platform.definitions as d
job = d.defs.resolve_job_def("activations_job")
stage = next(s for s in d.MAIN_STAGES if s.name == "activations")
print(json.dumps({"keys": d.activation_assets.sentence_activations.partitions_def.get_partition_keys(),
                  "prompt_keys": d.preference_assets.prompt_activations.partitions_def.get_partition_keys(),
                  "tags": stage.partition_tags(job)}))
"""


@pytest.mark.parametrize("profile", ["embedded", "paper", "tiny"])
def test_every_partition_key_is_a_layer_of_its_model(profile):
    env = {**os.environ, "TA_MODEL_PROFILE": profile, "HF_HUB_OFFLINE": "1"}
    env.pop("TA_MODEL_REGISTRY", None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = json.loads(done.stdout.strip().splitlines()[-1])
    registry = load_registry(profile)
    keys = listed["keys"]
    assert keys == listed["prompt_keys"]
    for key in keys:
        model, layer = parse_partition_key(key)
        assert 0 <= layer < registry[model].num_layers, key
    # each model has exactly its configured layers, no more
    assert sorted(keys) == sorted(k for spec in registry.values() for k in spec.partition_keys())
    # the main job's full range starts and ends on real keys and covers them all
    assert (listed["tags"]["dagster/asset_partition_range_start"], listed["tags"]["dagster/asset_partition_range_end"]) \
        == (keys[0], keys[-1])


def test_paper_profile_layers_follow_each_models_depth():
    registry = load_registry("paper")
    assert registry["r1-distill-qwen-14b"].partition_keys() == [
        "r1-distill-qwen-14b/L12", "r1-distill-qwen-14b/L24", "r1-distill-qwen-14b/L36"]
    assert registry["r1-distill-llama-8b"].partition_keys() == [
        "r1-distill-llama-8b/L8", "r1-distill-llama-8b/L16", "r1-distill-llama-8b/L24"]


def test_a_run_extracts_only_the_layers_its_keys_ask_for():
    asked = ["smollm2-135m/L15", "tiny-llama/L2", "tiny-llama/L6", "smollm2-135m/L7"]
    assert requested_layers(asked) == {"smollm2-135m": [7, 15], "tiny-llama": [2, 6]}
    with pytest.raises(ValueError, match="L4|tiny-qwen2"):
        requested_layers(["L4|tiny-qwen2"])  # the old grid's key format is refused by name
