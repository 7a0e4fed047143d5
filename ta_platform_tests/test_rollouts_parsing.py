"""Strict trace parsing: real traces load, and every kind of bad input is a DataFault naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ta_platform.common.faults import DataFault
from ta_platform.common.hashing import sha256_file
from ta_platform.rollouts.generator import generate_dataset
from ta_platform.rollouts.layout import INCORRECT_SPLIT, TRACE_FILES, TraceRef
from ta_platform.rollouts.parsing import parse_trace
from ta_platform.rollouts.sources import LocalRolloutSource, load_traces

REAL_ROLLOUTS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "math-rollouts"
requires_real = pytest.mark.skipif(
    not REAL_ROLLOUTS.is_dir(), reason=f"real traces absent: {REAL_ROLLOUTS} (../shared/realdata not present)"
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    generate_dataset(root, seed=11, n_problems=1)
    return root


@pytest.fixture
def dataset(generated, tmp_path) -> Path:
    """A private copy of the small generated dataset that a test may break."""
    root = tmp_path / "data"
    shutil.copytree(generated, root)
    return root


def first_ref(root: Path) -> TraceRef:
    return LocalRolloutSource(root).list_traces()[0]


def edit_json(path: Path, change) -> None:
    payload = json.loads(path.read_text())
    result = change(payload)
    path.write_text(json.dumps(payload if result is None else result, indent=2))


def set_chunk_field(position: int, key: str, value):
    def change(chunks):
        chunks[position][key] = value

    return change


def drop_chunk_field(position: int, key: str):
    def change(chunks):
        del chunks[position][key]

    return change


def set_base(**fields):
    def change(base):
        base.update(fields)

    return change


def empty_thinking(base):
    base["solution"] = "</think>\n\nThe answer is 3."
    base["full_cot"] = base["prompt"] + base["solution"]


def whitespace_thinking(base):
    base["solution"] = "  \n\n </think>\n\nThe answer is 3."
    base["full_cot"] = base["prompt"] + base["solution"]


def no_think_tag(base):
    base["prompt"] = base["prompt"].replace("<think>", "")
    base["full_cot"] = base["prompt"] + base["solution"]


# (case id, file to edit, edit, expected fault kind, words the problem must contain)
BAD_INPUTS = [
    ("malformed-json", "problem.json", lambda p: p.write_text('{"problem": "x",\n  "level": '), "malformed_json",
     ["line 2 column"]),
    ("not-utf8", "base_solution.json", lambda p: p.write_bytes(b'{"prompt": "\xff"}'), "malformed_json", ["UTF-8"]),
    ("problem-missing-key", "problem.json", lambda p: edit_json(p, lambda d: d.pop("gt_answer") and None),
     "missing_key", ["gt_answer"]),
    ("problem-not-object", "problem.json", lambda p: p.write_text("[]"), "wrong_type", ["JSON object"]),
    ("is-correct-not-bool", "base_solution.json", lambda p: edit_json(p, set_base(is_correct="true")), "wrong_type",
     ["is_correct", "boolean"]),
    ("answer-not-str", "base_solution.json", lambda p: edit_json(p, set_base(answer=42)), "wrong_type", ["answer"]),
    ("full-cot-mismatch", "base_solution.json", lambda p: edit_json(p, set_base(full_cot="something else")),
     "inconsistent", ["full_cot != prompt + solution"]),
    ("empty-think", "base_solution.json", lambda p: edit_json(p, empty_thinking), "empty_think", ["empty think"]),
    ("whitespace-think", "base_solution.json", lambda p: edit_json(p, whitespace_thinking), "empty_think", ["empty"]),
    ("no-think-tag", "base_solution.json", lambda p: edit_json(p, no_think_tag), "empty_think", ["<think>"]),
    ("wrong-split", "base_solution.json", lambda p: edit_json(p, set_base(is_correct=False)), "inconsistent",
     ["is_correct=False", "correct_base_solution"]),
    ("chunk-missing-key", "chunks_labeled.json", lambda p: edit_json(p, drop_chunk_field(3, "summary")),
     "missing_key", ["chunk 3", "summary"]),
    ("chunk-idx-not-int", "chunks_labeled.json", lambda p: edit_json(p, set_chunk_field(4, "chunk_idx", "4")),
     "wrong_type", ["chunk 4", "chunk_idx"]),
    ("chunk-idx-bool", "chunks_labeled.json", lambda p: edit_json(p, set_chunk_field(1, "chunk_idx", True)),
     "wrong_type", ["chunk 1", "chunk_idx"]),
    ("importance-not-number", "chunks_labeled.json",
     lambda p: edit_json(p, set_chunk_field(2, "counterfactual_importance_accuracy", "0.1")), "wrong_type",
     ["chunk 2", "counterfactual_importance_accuracy"]),
    ("importance-nan", "chunks_labeled.json",
     lambda p: edit_json(p, set_chunk_field(5, "counterfactual_importance_accuracy", float("nan"))), "non_finite",
     ["chunk 5", "counterfactual_importance_accuracy", "nan"]),
    ("accuracy-inf", "chunks_labeled.json", lambda p: edit_json(p, set_chunk_field(6, "accuracy", float("inf"))),
     "non_finite", ["chunk 6", "accuracy"]),
    ("tags-not-list", "chunks_labeled.json",
     lambda p: edit_json(p, set_chunk_field(0, "function_tags", "problem_setup")), "wrong_type",
     ["chunk 0", "function_tags"]),
    ("depends-on-ints", "chunks_labeled.json", lambda p: edit_json(p, set_chunk_field(7, "depends_on", [1, 2])),
     "wrong_type", ["chunk 7", "depends_on"]),
    ("empty-chunk-text", "chunks_labeled.json", lambda p: edit_json(p, set_chunk_field(2, "chunk", "  ")),
     "empty_chunk_text", ["chunk 2"]),
    ("chunk-not-object", "chunks_labeled.json", lambda p: edit_json(p, lambda c: c.__setitem__(3, "text")),
     "wrong_type", ["chunk 3"]),
    ("duplicate-idx", "chunks_labeled.json", lambda p: edit_json(p, set_chunk_field(4, "chunk_idx", 3)),
     "non_contiguous", ["position 4", "chunk_idx 3"]),
    ("gap-in-idx", "chunks_labeled.json", lambda p: edit_json(p, lambda c: c.pop(4) and None), "non_contiguous",
     ["position 4", "chunk_idx 5"]),
    ("empty-chunk-list", "chunks_labeled.json", lambda p: p.write_text("[]"), "empty_chunks", ["empty"]),
    ("chunks-not-list", "chunks_labeled.json", lambda p: p.write_text("{}"), "wrong_type", ["JSON list"]),
    ("missing-file", "chunks_labeled.json", lambda p: p.unlink(), "missing_file", ["chunks_labeled.json", "missing"]),
]


@pytest.mark.parametrize(("name", "target", "breaker", "kind", "words"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
@pytest.mark.fault
def test_bad_input_is_a_data_fault_naming_file_and_problem(dataset, name, target, breaker, kind, words):
    ref = first_ref(dataset)
    folder = dataset / ref.relative_dir
    breaker(folder / target)
    with pytest.raises(DataFault) as caught:
        parse_trace(ref, folder)
    fault = caught.value
    assert fault.path == str(folder / target)
    assert fault.kind == kind
    for word in words:
        assert word in fault.problem, fault.problem
    assert str(fault).startswith(str(folder / target))


@pytest.mark.fault
def test_missing_trace_folder_is_a_data_fault(dataset):
    ref = TraceRef("deepseek-r1-distill-qwen-14b", INCORRECT_SPLIT, "999999")
    with pytest.raises(DataFault) as caught:
        parse_trace(ref, dataset / ref.relative_dir)
    assert caught.value.kind == "missing_file"


def test_valid_trace_parses_with_hashes_and_source(dataset):
    ref = first_ref(dataset)
    folder = dataset / ref.relative_dir
    trace = parse_trace(ref, folder)
    assert trace.key == ref.key and trace.setting == ref.setting
    assert trace.files == {name: sha256_file(folder / name) for name in TRACE_FILES}
    assert trace.source == str(folder)
    assert trace.chunk_texts[0] and trace.n_chunks == len(trace.chunks)
    assert trace.think_text.strip().startswith(trace.chunk_texts[0][:10])
    assert parse_trace(ref, folder, source="hf://x/y@abc").source == "hf://x/y@abc"


@pytest.mark.fault
def test_load_traces_skips_and_records_broken_traces(dataset):
    source = LocalRolloutSource(dataset)
    refs = source.list_traces()
    assert len(refs) == 4
    broken_json, broken_nan = refs[0], refs[2]
    (dataset / broken_json.relative_dir / "problem.json").write_text("{oops")
    edit_json(dataset / broken_nan.relative_dir / "chunks_labeled.json",
              set_chunk_field(1, "counterfactual_importance_accuracy", float("nan")))
    traces, faults = load_traces(source)
    assert sorted(t.key for t in traces) == sorted(r.key for r in (refs[1], refs[3]))
    assert [(f.stage, f.item, f.kind) for f in faults] == [
        ("load", broken_json.key, "malformed_json"),
        ("load", broken_nan.key, "non_finite"),
    ]
    assert faults[0].path.endswith("problem.json") and faults[1].path.endswith("chunks_labeled.json")
    assert faults[1].as_row()["problem"].startswith("chunk 1:")


@requires_real
@pytest.mark.realdata
def test_all_24_real_traces_load_through_the_local_source():
    source = LocalRolloutSource(REAL_ROLLOUTS)
    traces, faults = load_traces(source, models=None, splits=None, problem_ids="all")
    assert faults == []
    assert len(traces) == 24
    assert {t.problem_id for t in traces} == {"330", "1591", "2189", "2236", "2238", "3448"}
    assert sum(t.n_chunks for t in traces) == 2816
    for trace in traces:
        assert trace.base_solution["is_correct"] == (trace.setting == "correct")
        assert set(trace.files) == set(TRACE_FILES)
        assert Path(trace.source).is_dir()
