"""The Hub layout names and the sentence split rule (on hand-made text and on the real chunks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ta_platform.rollouts.layout import (
    CORRECT_SPLIT,
    INCORRECT_SPLIT,
    SPLITS,
    TraceRef,
    problem_id_from_dir,
    setting_of,
)
from ta_platform.rollouts.sentence_split import merge_short_pieces, raw_pieces, split_sentences
from ta_platform.rollouts.think import think_region

REAL_ROLLOUTS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "math-rollouts"
requires_real = pytest.mark.skipif(
    not REAL_ROLLOUTS.is_dir(), reason=f"real traces absent: {REAL_ROLLOUTS} (../shared/realdata not present)"
)


def test_trace_ref_names_match_the_hub_layout():
    ref = TraceRef("deepseek-r1-distill-qwen-14b", CORRECT_SPLIT, 330)
    assert ref.problem_id == "330"
    assert ref.key == "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_330"
    assert ref.relative_dir == "deepseek-r1-distill-qwen-14b/temperature_0.6_top_p_0.95/correct_base_solution/problem_330"
    assert ref.setting == "correct"
    assert TraceRef.from_key(ref.key) == ref
    assert TraceRef("m", INCORRECT_SPLIT, "7").setting == "incorrect"
    assert SPLITS == ("correct_base_solution", "incorrect_base_solution")


def test_layout_rejects_other_names():
    with pytest.raises(ValueError):
        setting_of("correct_base_solution_forced_answer")
    with pytest.raises(ValueError):
        TraceRef.from_key("model/split/chunk_3")
    assert problem_id_from_dir("problem_2238") == "2238"
    assert problem_id_from_dir("chunk_0") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("First sentence here. Second sentence here!", ["First sentence here.", "Second sentence here!"]),
        ("Is this a question? Yes it is a question.", ["Is this a question?", "Yes it is a question."]),
        ("Cut at newline too.\nNext line is here.", ["Cut at newline too.", "Next line is here."]),
        ("No cut inside 3.5 or x.y here.", ["No cut inside 3.5 or x.y here."]),
        ("A heading without a stop\n\nThen a paragraph.", ["A heading without a stop", "Then a paragraph."]),
        ("  Leading space is stripped.   Trailing remainder kept", ["Leading space is stripped.", "Trailing remainder kept"]),
        ("Wait. That was a long thought.", ["Wait. That was a long thought."]),  # short piece merged forward
        ("Hmm.\nLet me think again now.", ["Hmm. Let me think again now."]),  # joined with ONE space
        ("So. Ok. This sentence is long enough.", ["So. Ok. This sentence is long enough."]),
        ("This sentence is long enough. Done.", ["This sentence is long enough. Done."]),  # last short -> previous
        ("Tiny.", ["Tiny."]),
        ("", []),
        ("Line one has words.\n\n\n\nAfter several blank lines.", ["Line one has words.", "After several blank lines."]),
    ],
)
def test_split_rule(text, expected):
    assert split_sentences(text) == expected


def test_split_steps_are_exposed():
    assert raw_pieces("Ok. A longer sentence.") == ["Ok.", "A longer sentence."]
    assert merge_short_pieces(["Ok.", "A longer sentence."]) == ["Ok. A longer sentence."]


def test_think_region():
    cot = "Prompt Solution: \n<think>\nThinking here.\n</think>\n\nAnswer."
    start, end = think_region(cot)
    assert cot[start:end] == "\nThinking here.\n"
    unterminated = "P <think>\nStill thinking"
    start, end = think_region(unterminated)
    assert unterminated[start:end] == "\nStill thinking" and end == len(unterminated)
    with pytest.raises(ValueError):
        think_region("no tag at all")


@requires_real
@pytest.mark.realdata
def test_split_rule_reproduces_the_real_chunks():
    """Measured: all 24 real traces (2,816 chunks) are reproduced exactly by re-splitting the think text."""
    folders = sorted(REAL_ROLLOUTS.glob("*/temperature_0.6_top_p_0.95/*_base_solution/problem_*"))
    assert len(folders) == 24
    mismatched = []
    n_chunks = 0
    for folder in folders:
        full_cot = json.loads((folder / "base_solution.json").read_text())["full_cot"]
        chunks = [c["chunk"] for c in json.loads((folder / "chunks_labeled.json").read_text())]
        n_chunks += len(chunks)
        start, end = think_region(full_cot)
        if split_sentences(full_cot[start:end]) != chunks:
            mismatched.append(folder.name)
    assert n_chunks == 2816
    assert mismatched == []
