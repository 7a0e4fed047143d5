"""Anchor label policies and chunk alignment on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ta_platform.anchors.alignment import align_chunks
from ta_platform.anchors.labels import AnchorLabelConfig, label_anchors
from ta_platform.common.faults import DataFault


def test_ties_at_the_threshold_are_all_anchors_regardless_of_order():
    scores = np.array([0.5, 0.5, 0.1, 0.2, 0.5, 0.0, 0.3, 0.1, 0.2, 0.4])
    in_set = np.ones(10, dtype=bool)
    config = AnchorLabelConfig(percentile=80)
    anchors = label_anchors(scores, in_set, config)
    assert anchors.tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    permutation = np.random.default_rng(0).permutation(10)
    assert label_anchors(scores[permutation], in_set, config).tolist() == anchors[permutation].tolist()


def test_a_zero_percentile_never_labels_zero_scores():
    scores = np.array([0.0] * 9 + [0.7])
    anchors = label_anchors(scores, np.ones(10, dtype=bool), AnchorLabelConfig(percentile=50))
    assert anchors.tolist() == [0] * 9 + [1]


def test_dropped_last_chunk_is_never_an_anchor():
    scores = np.array([0.1, 0.2, 0.9])
    in_set = np.array([True, True, False])
    assert label_anchors(scores, in_set, AnchorLabelConfig(percentile=50)).tolist() == [0, 1, 0]


def test_signed_mode_ranks_helpful_sentences_first():
    from ta_platform.anchors.labels import anchor_scores

    importance = np.array([-0.4, 0.4, 0.0])
    assert anchor_scores(importance, AnchorLabelConfig(score="signed")).tolist() == [0.4, -0.4, -0.0]
    with pytest.raises(ValueError, match="anchor score"):
        AnchorLabelConfig(score="square").validate()


def test_alignment_walks_a_cursor_so_repeated_sentences_map_in_order():
    text = "<think>\nWait. Let me check.\n\nWait. Done now.\n</think>"
    spans = align_chunks(text, ["Wait. Let me check.", "Wait. Done now."], (8, len(text) - 8))
    assert [text[s.char_start:s.char_end] for s in spans] == ["Wait. Let me check.", "Wait. Done now."]
    assert spans[1].char_start > spans[0].char_end


def test_alignment_falls_back_to_flexible_whitespace_for_merged_chunks():
    text = "<think>\nOk.\nSo x = 2 here.\n</think>"
    spans = align_chunks(text, ["Ok. So x = 2 here."], (8, len(text)))
    assert spans[0].match == "whitespace"
    assert text[spans[0].char_start:spans[0].char_end] == "Ok.\nSo x = 2 here."


def test_a_chunk_missing_from_full_cot_is_a_fault_naming_file_and_chunk():
    text = "<think>\nFirst sentence here. Second one.\n</think>"
    with pytest.raises(DataFault, match=r"chunks_labeled.json: chunk 1 .*does not occur"):
        align_chunks(text, ["First sentence here.", "A sentence not in the text."], (8, len(text)))


def test_text_between_chunks_that_is_not_whitespace_is_a_fault():
    text = "<think>\nFirst sentence here. Missing one. Third one here.\n</think>"
    with pytest.raises(DataFault, match="between chunk 0 and chunk 1"):
        align_chunks(text, ["First sentence here.", "Third one here."], (8, len(text)))
