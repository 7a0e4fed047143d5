"""Character spans -> token spans and length-sorted batching, on hand-made offsets (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from ta_platform.common.faults import DataFault
from ta_platform.extraction.batching import plan_batches
from ta_platform.extraction.spans import char_spans_to_token_spans, tokenize_with_offsets

# "<bos>" + "Hi there." + " Next one." with a token straddling nothing and an EOS at the end
OFFSETS = np.array([(0, 0), (0, 2), (2, 8), (8, 9), (9, 14), (14, 18), (18, 19), (0, 0)])


def test_spans_map_to_overlapping_tokens_end_exclusive():
    spans = char_spans_to_token_spans(OFFSETS, [(0, 9), (10, 19)])
    assert spans.tolist() == [[1, 4], [4, 7]]  # BOS and EOS belong to no sentence
    assert spans.dtype == np.int64


def test_a_straddling_token_belongs_to_both_sentences():
    assert char_spans_to_token_spans(OFFSETS, [(0, 11), (11, 19)]).tolist() == [[1, 5], [4, 7]]


def test_sentence_without_tokens_or_bad_span_is_a_fault_naming_it():
    with pytest.raises(DataFault, match=r"trace/1: sentence 1: .* covers no token"):
        char_spans_to_token_spans(OFFSETS[:4], [(0, 9), (12, 19)], item="trace/1")
    with pytest.raises(DataFault, match="sentence 0: .*empty or outside"):
        char_spans_to_token_spans(OFFSETS, [(5, 5)])
    with pytest.raises(DataFault, match="sentence 1: .*outside"):
        char_spans_to_token_spans(OFFSETS, [(0, 9), (10, 40)], text_length=19)


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="not a fast tokenizer"):
        tokenize_with_offsets(Slow(), "text")


def test_batches_are_length_sorted_within_budget_and_deterministic():
    lengths = [100, 400, 50, 400, 300, 1000]
    assert plan_batches(lengths, 0) == [[5], [1], [3], [4], [0], [2]]
    batches = plan_batches(lengths, 900)
    assert batches == [[5], [1, 3], [4, 0, 2]]
    assert all(len(b) * max(lengths[i] for i in b) <= 900 or len(b) == 1 for b in batches)
