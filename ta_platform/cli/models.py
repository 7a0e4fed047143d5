"""``ta-platform models [--json]``: the models of the active registry profile, before anything runs.

Why: a user switching profiles (``TA_MODEL_PROFILE=paper``) must see, without downloading or loading
anything, which models a run will use, whether their weights are already available offline, whether
they are pretrained or random, and exactly which activation partition keys each model owns.
``--json`` prints one JSON object per line (keys ``key, source, offline, pretrained, num_layers,
layer_keys, trace_models``) for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None, help="registry profile (default: $TA_MODEL_PROFILE or the file's)")
    parser.add_argument("--json", action="store_true", help="one JSON object per model per line")


def describe_models(profile: str | None = None) -> list[dict[str, Any]]:
    """One row per model of the profile; reads the registry and the local disk only."""
    from ta_platform.extraction.loading import weights_available_offline
    from ta_platform.extraction.registry import load_registry

    rows = []
    for key, spec in load_registry(profile).items():
        offline, detail = weights_available_offline(spec)
        rows.append({"key": key, "source": spec.source, "offline": offline, "pretrained": spec.pretrained,
                     "num_layers": spec.num_layers, "layer_keys": spec.partition_keys(),
                     "trace_models": list(spec.trace_models), "max_problems": spec.max_problems, "model_id": spec.model_id, "detail": detail})
    return rows


JSON_KEYS = ("key", "source", "offline", "pretrained", "num_layers", "layer_keys", "trace_models")


def run(args: argparse.Namespace) -> int:
    from ta_platform.extraction.registry import registry_file

    rows = describe_models(args.profile)
    if args.json:
        for row in rows:
            print(json.dumps({name: row[name] for name in JSON_KEYS}))
        return 0
    print(f"registry: {registry_file()}")
    for row in rows:
        print(f"{row['key']}  [{row['source']}: {row['model_id']}]  "
              f"{'pretrained' if row['pretrained'] else 'random weights'}, {row['num_layers']} layers, "
              f"offline: {'yes' if row['offline'] else 'no'} ({row['detail']})")
        print(f"    layer keys:   {' '.join(row['layer_keys'])}")
        limit = f" (first {row['max_problems']} problems by id)" if row.get("max_problems") else ""
        print(f"    trace folders: {', '.join(row['trace_models'])}{limit}")
    return 0
