"""Backtracking chains: tag parsing, alignment, token labels from offsets, bad inputs, the real chains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ta_platform.chains.alignment import align_segments
from ta_platform.chains.records import build_chain_table, read_records
from ta_platform.chains.synthetic import generate_chains
from ta_platform.chains.tags import Segment, parse_annotated
from ta_platform.chains.token_labels import chain_token_labels
from ta_platform.common.faults import DataFault
from ta_platform.extraction.loading import load_tokenizer
from ta_platform.extraction.registry import DEFAULT_REGISTRY, get_model_spec

REAL_CHAINS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "backtracking" / "all_annotated_chains.json"
requires_real_chains = pytest.mark.skipif(not REAL_CHAINS.is_file(),
                                          reason=f"real annotated chains not found at {REAL_CHAINS}")

GOOD = {"task_id": "t1", "problem": "p",
        "reasoning_chain": "\nOkay, let me think. So 2 + 2 = 4.\n\nWait, that's wrong... it is 5? No, 4.",
        "annotated_chain": '["initializing"] Okay, let me think. ["end-section"] ["deduction"] So 2+2 = 4. '
                           '["end-section"]\n\n["backtracking"] Wait, that\'s wrong it is 5? ["end-section"] '
                           '["deduction"] No, 4. ["end-section"]'}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(get_model_spec("tiny-qwen2", profile="tiny", path=DEFAULT_REGISTRY))


def test_parse_tags_in_order_with_text_between_sections_kept():
    segments = parse_annotated("t", '```x ["deduction"] a b ["end-section"] mid ["backtracking"] c ["end-section"]')
    assert segments == [Segment(None, "```x"), Segment("deduction", "a b"), Segment(None, "mid"),
                        Segment("backtracking", "c")]


def test_alignment_is_whitespace_and_punctuation_flexible():
    segments = parse_annotated("t1", GOOD["annotated_chain"])
    alignment = align_segments("t1", GOOD["reasoning_chain"], segments)
    text = GOOD["reasoning_chain"]
    spans = {s.label: text[s.char_start:s.char_end] for s in alignment.segments}
    assert spans["backtracking"] == "Wait, that's wrong... it is 5"
    assert spans["initializing"] == "Okay, let me think"
    assert alignment.coverage > 0.95


def test_token_labels_come_from_offsets_on_the_exact_string(tokenizer):
    table = build_chain_table([GOOD])
    row = table.chains.iloc[0]
    tokens = chain_token_labels(row.chain_id, row.text, json.loads(row.spans), tokenizer)
    ids = tokenizer(row.text, add_special_tokens=True, return_offsets_mapping=True)
    offsets = np.asarray(ids["offset_mapping"])
    inside = tokens[tokens["in_backtracking"]]
    label, start, end = next(s for s in json.loads(row.spans) if s[0] == "backtracking")
    covered = "".join(row.text[offsets[p][0]:offsets[p][1]] for p in inside["position"])
    assert covered.strip().startswith("Wait") and covered.strip().endswith("5")
    onset = tokens[tokens["backtrack_onset"]]
    assert len(onset) == 1 and row.text[offsets[int(onset["position"].iloc[0])][0]:].lstrip().startswith("W")
    assert tokens["token_idx"].tolist() == list(range(len(tokens)))
    assert (offsets[tokens["position"]][:, 1] > offsets[tokens["position"]][:, 0]).all()  # no special tokens


@pytest.mark.parametrize("record, kind, words", [
    ({k: v for k, v in GOOD.items() if k != "annotated_chain"}, "missing_key", "annotated_chain"),
    ({**GOOD, "annotated_chain": '["pondering"] x ["end-section"]'}, "unknown_label", "pondering"),
    ({**GOOD, "annotated_chain": '["deduction"] a ["backtracking"] b ["end-section"]'}, "unbalanced_tags", "still open"),
    ({**GOOD, "annotated_chain": '["deduction"] a ["end-section"] ["end-section"]'}, "unbalanced_tags", "closes no"),
    ({**GOOD, "annotated_chain": '["deduction"] Okay, let me think.'}, "unbalanced_tags", "never closed"),
    ({**GOOD, "reasoning_chain": "  \n "}, "empty", "reasoning_chain is empty"),
    ({**GOOD, "annotated_chain": ""}, "empty", "annotated_chain is empty"),
    ({**GOOD, "annotated_chain": '["deduction"] Something never written. ["end-section"]'}, "unalignable",
     "segment 0 (deduction) 'Something never written.'"),
])
def test_bad_record_is_a_named_fault_and_the_rest_is_processed(record, kind, words):
    other = {**GOOD, "task_id": "t2"}
    table = build_chain_table([record, other], source="file.json")
    assert table.chains["chain_id"].tolist() == ["t2"]
    (fault,) = table.faults
    assert (fault.item, fault.kind, fault.path) == ("t1", kind, "file.json")
    assert words in fault.problem


def test_unparseable_file_names_the_file(tmp_path):
    bad = tmp_path / "chains.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="chains.json: not valid JSON"):
        read_records(bad)
    with pytest.raises(FileNotFoundError, match="TA_CHAINS_SOURCE"):
        read_records(tmp_path / "absent.json")


def test_embedded_generator_is_deterministic_and_aligns_fully():
    assert generate_chains(5, seed=3) == generate_chains(5, seed=3)
    assert generate_chains(5, seed=3) != generate_chains(5, seed=4)
    table = build_chain_table(generate_chains())
    assert not table.faults and (table.chains["coverage"] > 0.99).all()
    assert table.chains["n_backtracking"].sum() >= 20


@requires_real_chains
def test_real_chains_align_or_each_failure_is_named(tokenizer):
    records = read_records(REAL_CHAINS)
    table = build_chain_table(records, source=str(REAL_CHAINS))
    assert len(records) == 210
    faulted = {f.item for f in table.faults}
    assert len(table.chains) + len(faulted) == 210 and not (faulted & set(table.chains["chain_id"]))
    assert all(f.problem and f.kind in {"unbalanced_tags", "unknown_label", "unalignable", "low_coverage"}
               for f in table.faults)
    assert len(table.chains) >= 0.95 * 210, [f"{f.item}: {f.problem}" for f in table.faults]
    # every aligned backtracking section labels tokens, and its onset token starts the section's text
    n_sections, n_labelled = 0, 0
    for row in table.chains.itertuples():
        spans = json.loads(row.spans)
        tokens = chain_token_labels(row.chain_id, row.text, spans, tokenizer)
        sections = [s for s in spans if s[0] == "backtracking"]
        n_sections += len(sections)
        n_labelled += int(tokens["backtrack_onset"].sum())
        for _label, start, end in spans:
            assert row.text[start:end].strip() == row.text[start:end]  # spans start and end on text
    assert n_sections >= 140 and n_labelled == n_sections
    with pytest.raises(DataFault):
        parse_annotated("x", '["substitution"] a ["end-section"]')
