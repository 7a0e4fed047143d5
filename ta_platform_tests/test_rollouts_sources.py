"""The local source's filters, the one data switch (``source_from_spec``/``TA_DATA_SOURCE``) and the CLI."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from ta_platform.cli import generate_data
from ta_platform.rollouts.generator import MANIFEST_FILE, generate_dataset, read_manifest
from ta_platform.rollouts.layout import CORRECT_SPLIT, INCORRECT_SPLIT, KNOWN_MODELS, TraceRef
from ta_platform.rollouts.sources import (
    LocalRolloutSource,
    RolloutSource,
    embedded_dataset_dir,
    hf_cache_dir,
    load_traces,
    parse_hf_spec,
    source_from_env,
    source_from_spec,
)

QWEN, LLAMA = KNOWN_MODELS


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two generated problems plus folders every listing must ignore."""
    root = tmp_path_factory.mktemp("local") / "data"
    generate_dataset(root, seed=3, n_problems=2)
    some_trace = next(root.glob("*/*/correct_base_solution/problem_*"))
    shutil.copytree(some_trace, some_trace.parents[1] / "correct_base_solution_forced_answer" / some_trace.name)
    shutil.copytree(some_trace, some_trace.parents[1] / "incorrect_base_solution_sanity" / some_trace.name)
    (some_trace.parent / "not_a_problem").mkdir()
    (root / "README.md").write_text("readme")
    return root


def test_local_source_lists_and_filters(dataset):
    source = LocalRolloutSource(dataset)
    assert isinstance(source, RolloutSource)
    ids = read_manifest(dataset)["problem_ids"]
    everything = source.list_traces()
    assert len(everything) == 8  # 2 models x 2 splits x 2 problems; forced/sanity/other folders ignored
    assert {r.split for r in everything} == {CORRECT_SPLIT, INCORRECT_SPLIT}
    assert everything == sorted(everything, key=TraceRef.sort_key)
    assert source.list_traces(problem_ids="all") == everything
    only = source.list_traces(models=[QWEN], splits=[INCORRECT_SPLIT], problem_ids=[int(ids[1])])
    assert only == [TraceRef(QWEN, INCORRECT_SPLIT, ids[1])]
    assert source.list_traces(models=["no-such-model"]) == []
    assert source.list_traces(problem_ids=["424242"]) == []
    with pytest.raises(ValueError, match="unsupported split"):
        source.list_traces(splits=["correct_base_solution_forced_answer"])
    assert source.fetch(only[0]) == dataset.resolve() / only[0].relative_dir
    assert "local folder" in source.describe()


def test_local_source_on_a_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        LocalRolloutSource(tmp_path / "absent").list_traces()


def test_spec_switch_local_path_and_errors(dataset, monkeypatch):
    source = source_from_spec(str(dataset))
    assert isinstance(source, LocalRolloutSource) and source.root == dataset.resolve()
    monkeypatch.setenv("TA_DATA_SOURCE", str(dataset))
    assert source_from_env().root == dataset.resolve()
    with pytest.raises(ValueError, match="neither"):
        source_from_spec(str(dataset / "absent"))
    with pytest.raises(ValueError, match="bad Hub spec"):
        source_from_spec("hf://no-owner")
    assert parse_hf_spec("hf://uzaymacar/math-rollouts") == ("uzaymacar/math-rollouts", "main")
    assert parse_hf_spec("hf://a/b@v1.0") == ("a/b", "v1.0")


def test_hf_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TA_STORAGE", str(tmp_path / "storage"))
    monkeypatch.delenv("TA_HF_CACHE", raising=False)
    assert hf_cache_dir() == (tmp_path / "storage" / "hf_cache").resolve()
    monkeypatch.setenv("TA_HF_CACHE", str(tmp_path / "cache"))
    assert hf_cache_dir() == (tmp_path / "cache").resolve()


def test_embedded_is_the_default_and_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TA_STORAGE", str(tmp_path / "storage"))
    monkeypatch.delenv("TA_DATA_SOURCE", raising=False)
    source = source_from_env()
    assert isinstance(source, LocalRolloutSource)
    assert source.root == embedded_dataset_dir().resolve() == (tmp_path / "storage" / "data" / "embedded").resolve()
    manifest = source.root / MANIFEST_FILE
    assert manifest.is_file()
    first_write = manifest.stat().st_mtime_ns
    traces, faults = load_traces(source, models=[LLAMA], splits=[CORRECT_SPLIT], problem_ids="all")
    assert faults == [] and len(traces) == 24
    assert source_from_spec("embedded").root == source.root
    assert manifest.stat().st_mtime_ns == first_write  # not regenerated
    assert not [p for p in source.root.parent.iterdir() if p.name.startswith(".embedded")]  # no staging left


def test_cli_generate_data(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    generate_data.add_arguments(parser)
    out = tmp_path / "out"
    assert generate_data.run(parser.parse_args([str(out), "--seed", "4", "--problems", "1"])) == 0
    assert "wrote 4 traces" in capsys.readouterr().out
    assert read_manifest(out)["seed"] == 4
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    assert generate_data.run(parser.parse_args([str(tmp_path / "busy")])) == 2
