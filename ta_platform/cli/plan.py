"""``ta-platform plan``: per model, what the activation stages would load, read, skip, reuse and write.

Reads the data stage's outputs (run ``ta-platform materialize --stage data`` first: it is cheap) and
the per-trace activation cache; never loads weights or downloads anything. Two assets, as the main
job runs them: ``sentence_activations`` for every model and configured layer (the activations
stage), and ``prompt_activations`` for the judge's one partition (the prompts stage; the task pool
exists only once the data stage has run).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per model and asset")
    parser.add_argument("--device", default="auto", help="device the run would use (decides the dtype)")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ta_platform.extraction.device import select_device
    from ta_platform.extraction.registry import load_registry, parse_partition_key
    from ta_platform.store import artifacts
    from ta_platform.studies.extraction_plan import format_plan, plan_model
    from ta_platform.studies.sentence_extraction import prompt_trace_inputs, sentence_trace_inputs

    snapshot_file = artifacts.thought_anchor_file(artifacts.SNAPSHOT)
    spans_file = artifacts.thought_anchor_file(artifacts.CHAR_SPANS)
    if not (snapshot_file.exists() and spans_file.exists()):
        print(f"no data stage outputs under {snapshot_file.parent}: run `ta-platform materialize --stage data` "
              "first (it loads and aligns the traces; no model is loaded)")
        return 1
    snapshot, spans = pd.read_parquet(snapshot_file), pd.read_parquet(spans_file)
    device = select_device(args.device)
    registry = load_registry()
    sections = [("sentence_activations", [
        plan_model(spec, sentence_trace_inputs(snapshot, spans, spec.trace_models, spec.max_problems),
                   artifacts.activations_root(), device=device, pooling="mean")
        for _, spec in sorted(registry.items())])]
    pool_file = artifacts.pref_file("task_pool.parquet")
    if pool_file.exists():
        from ta_platform.defs.preferences.assets import PreferenceSettings, judge_partition_key

        judge, layer = parse_partition_key(judge_partition_key(registry, PreferenceSettings()))
        prompts = prompt_trace_inputs(pd.read_parquet(pool_file))
        sections.append(("prompt_activations", [
            plan_model(registry[judge], prompts, artifacts.prompt_root(), device=device, pooling="last",
                       layers=[layer])]))
    for asset, plans in sections:
        if args.json:
            for plan in plans:
                print(json.dumps({"asset": asset, "device": device, **plan.as_dict()}))
        else:
            print(format_plan(plans, f"{asset} on {device}:"))
            print()
    return 0
