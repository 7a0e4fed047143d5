"""Needle dataset: the generator is deterministic and versioned; a user JSONL is validated line by line."""

import json
from pathlib import Path

import pytest

from ta_platform.needle.dataset import (
    NeedleDatasetConfig,
    dataset_summary,
    generate_documents,
    read_jsonl,
    write_jsonl,
)
from ta_platform.needle.families import FAMILIES
from ta_platform.rollouts.generator import ensure_dataset
from ta_platform.rollouts.source_base import LocalRolloutSource
from ta_platform.rollouts.sources import load_traces


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    folder = ensure_dataset(tmp_path_factory.mktemp("embedded") / "embedded")
    loaded, faults = load_traces(LocalRolloutSource(folder))
    assert not faults
    return loaded


def test_generator_is_deterministic_and_seeded(traces, tmp_path):
    config = NeedleDatasetConfig()
    first = write_jsonl(tmp_path / "a.jsonl", generate_documents(traces, config)).read_bytes()
    again = write_jsonl(tmp_path / "b.jsonl", generate_documents(list(reversed(traces)), config)).read_bytes()
    assert first == again  # same config and traces, any order -> byte-identical file
    other = write_jsonl(tmp_path / "c.jsonl", generate_documents(traces, NeedleDatasetConfig(seed=1))).read_bytes()
    assert other != first
    assert config.file_name == "needle_rollouts_v1.jsonl"


def test_documents_hold_needles_at_their_offsets(traces):
    docs = generate_documents(traces, NeedleDatasetConfig())
    summary = dataset_summary(docs)
    assert 0.3 < summary["n_with_needle"] / summary["n_docs"] < 0.7
    assert set(summary["families"]) == set(FAMILIES)  # every documented family is used
    for split in ("train", "val", "test"):
        assert summary[f"n_{split}_with_needle"] > 0 and summary[f"n_{split}"] > summary[f"n_{split}_with_needle"]
    rendered = {family: [] for family in FAMILIES}
    for doc in docs:
        assert doc.has_needle == bool(doc.needle_spans)
        for start, end in doc.needle_spans:
            needle = doc.text[start:end]
            assert needle.strip() == needle and needle.endswith(".")
            rendered[doc.family].append(needle)
            haystack = doc.text[:start] + doc.text[end:]
            assert needle not in haystack
    # no document-level length cue: needle documents are not systematically longer
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    with_needle = mean([len(d.text) for d in docs if d.has_needle])
    without = mean([len(d.text) for d in docs if not d.has_needle])
    assert abs(with_needle - without) < 0.1 * without


def test_splits_keep_each_problem_together(traces):
    docs = generate_documents(traces, NeedleDatasetConfig())
    splits_of = {}
    for doc in docs:
        splits_of.setdefault(doc.group, set()).add(doc.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert len({d.doc_id for d in docs}) == len(docs)


def _line(**overrides):
    record = {"doc_id": "d1", "text": "Two plus two is four. The vault code is 7.", "needle_spans": [[22, 42]],
              "has_needle": True, "split": "train"}
    record.update(overrides)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.mark.parametrize("bad, kind, words", [
    (_line(doc_id="d2", needle_spans=[[22, 99]]), "span_outside_text", "outside the text"),
    (_line(doc_id="d2", needle_spans=[[0, 10], [5, 20]]), "overlapping_spans", "overlap"),
    (_line(doc_id="d2", split=...), "missing_key", "missing key(s) ['split']"),
    (_line(doc_id="d2", has_needle=False), "invalid", "has_needle is False"),
    (_line(doc_id="d2", split="dev"), "invalid", "split must be one of"),
    ('{"doc_id": "d2", ', "invalid_json", "not valid JSON"),
])
def test_bad_lines_are_skipped_with_a_named_fault(tmp_path, bad, kind, words):
    path = tmp_path / "user.jsonl"
    good_clean = _line(doc_id="d0", needle_spans=[], has_needle=False, text="Only arithmetic here.")
    path.write_text("\n".join([_line(), bad, good_clean]) + "\n")
    docs, faults = read_jsonl(path)
    assert [d.doc_id for d in docs] == ["d1", "d0"]  # the rest is processed
    assert len(faults) == 1
    assert faults[0].kind == kind
    assert f"{path}:2" in faults[0].path and words in faults[0].problem


def test_a_doc_id_given_twice_refuses_the_file(tmp_path):
    """Which of two records with one id is meant cannot be told: the whole file is refused, naming both lines."""
    from ta_platform.common.faults import DataFault

    path = tmp_path / "user.jsonl"
    path.write_text("\n".join([_line(), _line(text="Another text entirely. The vault code is 9.")]) + "\n")
    with pytest.raises(DataFault, match=r"line 2 \(doc d1\): duplicate doc_id, first at line 1"):
        read_jsonl(path)


def test_a_group_in_two_splits_is_refused(tmp_path):
    path = tmp_path / "user.jsonl"
    path.write_text("\n".join([_line(doc_id="a", group="p1"), _line(doc_id="b", group="p1", split="test"),
                               _line(doc_id="c", group="p2")]) + "\n")
    docs, faults = read_jsonl(path)
    assert [d.doc_id for d in docs] == ["c"]
    assert faults[0].kind == "split_leak" and "'p1'" in faults[0].problem


def test_user_file_replaces_the_generator(tmp_path, monkeypatch):
    from ta_platform.studies.needle import build_dataset, user_source

    monkeypatch.setenv("TA_STORAGE", str(tmp_path / "storage"))
    path = tmp_path / "user.jsonl"
    path.write_text(_line() + "\n" + _line(doc_id="x", needle_spans=[[0, 500]]) + "\n")
    monkeypatch.setenv("TA_NEEDLE_SOURCE", str(path))
    assert user_source() == str(path)

    def no_traces():
        raise AssertionError("the generator must not run when a user file is given")

    stored, docs, faults, provenance = build_dataset(NeedleDatasetConfig(), no_traces, user_source())
    assert [d.doc_id for d in docs] == ["d1"] and len(faults) == 1
    assert provenance["source"] == str(path.resolve())
    assert Path(stored).read_text().count("\n") == 1
    missing = tmp_path / "absent.jsonl"
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        build_dataset(NeedleDatasetConfig(), no_traces, str(missing))
