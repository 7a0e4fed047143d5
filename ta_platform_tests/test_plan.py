"""``ta-platform plan`` and ``materialize --dry-run``: what the activations stage would do, before it runs.

One project storage (the real CLI, a real Dagster instance) on the first 4 embedded problems, with a
reduced registry of tiny models: ``tiny-qwen2``; ``tiny-qwen2-short``, the same weights with a
context cut to the median trace length of the first 3 problems, so some traces are over it;
``cached-hub``, a Hub entry whose revision is in the Hub cache under TA_STORAGE (laid out as
``huggingface_hub`` stores a download); and, for the plan only, ``missing-hub``, a Hub model that
was never downloaded. HF_HUB_OFFLINE=1 throughout: any network access would fail the command.
The plan's numbers are compared with the tokenizer's own counts of the traces in the data stage's
snapshot, and, after the activations stage, with what that stage cached and recorded as faults.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ta_platform.store.metadata_store import MetadataStore
from ta_platform_tests.e2e import ONE_TINY_MODEL_REGISTRY, project_env, run_cli

pytestmark = pytest.mark.slow

QWEN_FOLDER, LLAMA_FOLDER = "deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-llama-8b"
HUB_ID, HUB_COMMIT = "ta-platform-tests/tiny-qwen2", "0123456789abcdef0123456789abcdef01234567"
TINY = ONE_TINY_MODEL_REGISTRY + """
[models.tiny-qwen2-short]
source = "tiny"
arch = "qwen2"
revision = "tiny-v1"
num_layers = 8
layers = [0.25]
dtype = "auto"
trace_model = "deepseek-r1-distill-qwen-14b"
max_problems = 3
max_length = {max_length}

[models.cached-hub]
source = "hub"
id = "{hub_id}"
revision = "main"
num_layers = 8
layers = [0.75]
dtype = "auto"
trace_model = "deepseek-r1-distill-llama-8b"
"""
MISSING_HUB = """
[models.missing-hub]
source = "hub"
id = "ta-platform-tests/never-downloaded-70b"
revision = "main"
num_layers = 80
layers = [0.5]
dtype = "auto"
trace_model = "deepseek-r1-distill-qwen-14b"
parameters = 70000000000
hidden_size = 8192
"""


def _place_in_hub_cache(folder: Path, hub_cache: Path) -> None:
    """``folder``'s files as the Hub cache holds a download of HUB_ID@main (snapshot + refs/main)."""
    repo = hub_cache / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / HUB_COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)


def _plan(env: dict[str, str], registry: Path) -> dict[str, dict]:
    """``ta-platform plan --json``'s sentence_activations objects, by model key."""
    result = run_cli(["ta-platform", "plan", "--json"], {**env, "TA_MODEL_REGISTRY": str(registry)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["key"]: row for row in rows if row["asset"] == "sentence_activations"}


def _runs(storage: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(storage / "dagster_home")) as instance:
        return [run.run_id for run in instance.get_runs()]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Data stage done; the registry's short context set from the traces it produced; the first plan."""
    from transformers import AutoTokenizer

    from ta_platform.extraction.tiny_models import ensure_tiny_model

    storage = tmp_path_factory.mktemp("storage")
    models = tmp_path_factory.mktemp("models")
    tiny_folder = ensure_tiny_model("qwen2", models)  # the folder every tiny entry loads (built once)
    _place_in_hub_cache(tiny_folder, storage / "hf_cache")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_folder))
    registry = storage.parent / "models.toml"
    registry.write_text(TINY.format(max_length=8192, hub_id=HUB_ID))
    env = project_env(storage, TA_DATA_SOURCE="embedded", TA_MAX_PROBLEMS="4", TA_MODEL_CACHE=str(models),
                      TA_MODEL_REGISTRY=str(registry), HF_HUB_OFFLINE="1")
    data = run_cli(["ta-platform", "materialize", "--stage", "data"], env)
    assert data.returncode == 0, data.stdout[-4000:] + data.stderr[-4000:]

    snapshot = pd.read_parquet(storage / "thought_anchors" / "traces.parquet")
    first_problems = sorted(snapshot["problem_id"].astype(str).unique())
    assert len(first_problems) == 4  # TA_MAX_PROBLEMS
    tokens = {row.trace_key: len(tokenizer(row.full_cot)["input_ids"]) for row in snapshot.itertuples()}
    short = snapshot[(snapshot["model"] == QWEN_FOLDER) & snapshot["problem_id"].astype(str).isin(first_problems[:3])]
    lengths = sorted(tokens[key] for key in short["trace_key"])
    max_length = lengths[len(lengths) // 2 - 1]  # the lower median: about half the traces are over it
    over = sorted(key for key in short["trace_key"] if tokens[key] > max_length)
    assert 0 < len(over) < len(short), (lengths, max_length)
    registry.write_text(TINY.format(max_length=max_length, hub_id=HUB_ID))
    plan_registry = storage.parent / "plan_models.toml"
    plan_registry.write_text(registry.read_text() + MISSING_HUB)
    before = _plan(env, plan_registry)
    return {"storage": storage, "env": env, "registry": registry, "plan_registry": plan_registry,
            "snapshot": snapshot, "tokens": tokens, "max_length": max_length, "over": over, "before": before,
            "short_traces": sorted(short["trace_key"])}


def _traces_of(project, folder: str, n_problems: int | None = None) -> list[str]:
    snapshot = project["snapshot"]
    rows = snapshot[snapshot["model"] == folder]
    if n_problems:
        rows = rows[rows["problem_id"].astype(str).isin(sorted(rows["problem_id"].astype(str).unique())[:n_problems])]
    return sorted(rows["trace_key"])


def test_plan_counts_every_trace_and_exact_tokens_before_extraction(project):
    plan, tokens = project["before"], project["tokens"]
    assert set(plan) == {"tiny-qwen2", "tiny-qwen2-short", "cached-hub", "missing-hub"}
    expected = {"tiny-qwen2": _traces_of(project, QWEN_FOLDER), "tiny-qwen2-short": project["short_traces"],
                "cached-hub": _traces_of(project, LLAMA_FOLDER)}
    for key, traces in expected.items():
        row = plan[key]
        assert row["traces"] == len(traces) > 0, (key, row)
        assert row["tokens_exact"] and row["tokens"] == sum(tokens[t] for t in traces), (key, row)
        assert row["parameters"] > 0 and row["weights_gib"] == pytest.approx(
            row["parameters"] * {"float32": 4, "bfloat16": 2}[row["dtype"]] / 2**30, abs=1e-3)
        n_fit = len(traces) - row["over_context"]
        assert row["entries_cached"] == 0 and row["entries_to_compute"] == n_fit * len(row["layers"]), (key, row)
        assert row["layers_current"] == [] and row["disk_needed_gib"] > 0, (key, row)
    assert plan["tiny-qwen2"]["over_context"] == plan["cached-hub"]["over_context"] == 0


def test_plan_counts_traces_over_the_registry_context(project):
    row = project["before"]["tiny-qwen2-short"]
    assert row["max_length"] == project["max_length"]
    assert row["over_context"] == len(project["over"]) and sorted(row["over_context_traces"]) == project["over"]


def test_a_hub_model_not_downloaded_is_planned_with_estimated_tokens_offline(project):
    row = project["before"]["missing-hub"]
    snapshot = project["snapshot"]
    texts = snapshot[snapshot["model"] == QWEN_FOLDER]["full_cot"]
    assert row["traces"] == len(texts) and not row["tokens_exact"]
    assert abs(row["tokens"] - texts.str.len().sum() / 4) <= len(texts)  # about 4 characters per token
    assert "not available offline" in row["note"] and "never-downloaded-70b" in row["note"]
    assert row["entries_cached"] == 0 and row["entries_to_compute"] == len(texts) * len(row["layers"]) == len(texts)
    assert row["layers"] == ["L40"] and row["weights_gib"] == pytest.approx(
        70e9 * {"float32": 4, "bfloat16": 2}[row["dtype"]] / 2**30, abs=1e-3)
    assert not (project["storage"] / "hf_cache" / "models--ta-platform-tests--never-downloaded-70b").exists()


def test_dry_run_prints_the_plan_and_starts_no_run(project):
    storage, env = project["storage"], project["env"]
    runs = _runs(storage)
    result = run_cli(["ta-platform", "materialize", "--dry-run"], {**env, "TA_MODEL_REGISTRY": str(project["plan_registry"])})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sentence_activations on " in result.stdout and "[activations] running" not in result.stdout
    for key in ("tiny-qwen2", "tiny-qwen2-short", "cached-hub", "missing-hub"):
        assert f"\n{key} " in result.stdout, result.stdout
    assert _runs(storage) == runs and len(runs) == 1  # the data stage's run only


def test_after_extraction_everything_is_cached_and_the_over_context_traces_are_the_too_long_faults(project):
    storage, env = project["storage"], project["env"]
    extracted = run_cli(["ta-platform", "materialize", "--stage", "activations"], env)
    assert extracted.returncode == 0, extracted.stdout[-4000:] + extracted.stderr[-4000:]
    before, after = project["before"], _plan(env, project["registry"])
    assert set(after) == {"tiny-qwen2", "tiny-qwen2-short", "cached-hub"}
    for key, row in after.items():
        n_fit = row["traces"] - row["over_context"]
        assert row["entries_to_compute"] == 0 and row["entries_cached"] == before[key]["entries_to_compute"] \
            == n_fit * len(row["layers"]), (key, row)
        assert row["layers_current"] == row["layers"] and row["disk_needed_gib"] == 0, (key, row)

    faults = MetadataStore(storage / "metadata.duckdb").read_table("faults")
    too_long = faults[faults["kind"] == "too_long"]
    assert sorted(too_long[too_long["stage"] == "extract:tiny-qwen2-short"]["item"]) == project["over"]
    assert set(too_long["stage"]) == {"extract:tiny-qwen2-short"}, too_long.to_string()
