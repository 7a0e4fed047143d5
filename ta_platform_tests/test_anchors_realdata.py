"""All 24 real math-rollouts traces load, align 100% and get labels."""

from __future__ import annotations

from ta_platform.anchors.alignment import align_chunks
from ta_platform.anchors.labels import AnchorLabelConfig, build_label_table
from ta_platform.rollouts.layout import KNOWN_MODELS, SPLITS, TraceRef
from ta_platform.rollouts.parsing import parse_trace, think_region
from ta_platform_tests.realdata import MATH_ROLLOUTS, requires_realdata

pytestmark = [requires_realdata, __import__("pytest").mark.realdata]

PROBLEMS = ["330", "1591", "2189", "2236", "2238", "3448"]


def _real_traces():
    traces = []
    for model in KNOWN_MODELS:
        for split in SPLITS:
            for pid in PROBLEMS:
                ref = TraceRef(model, split, pid)
                traces.append(parse_trace(ref, MATH_ROLLOUTS / ref.relative_dir))
    return traces


def test_all_real_traces_align_completely_inside_the_think_region():
    traces = _real_traces()
    assert len(traces) == 24
    n_whitespace = n_total = 0
    for trace in traces:
        region = think_region(trace.full_cot)
        spans = align_chunks(trace.full_cot, trace.chunk_texts, region)
        assert len(spans) == trace.n_chunks
        assert all(region[0] <= s.char_start < s.char_end <= region[1] for s in spans)
        for previous, current in zip(spans, spans[1:], strict=False):
            assert previous.char_end <= current.char_start
            assert trace.full_cot[previous.char_end:current.char_start].strip() == ""
        for span, text in zip(spans, trace.chunk_texts, strict=True):
            if span.match == "exact":
                assert trace.full_cot[span.char_start:span.char_end] == text
            else:
                assert trace.full_cot[span.char_start:span.char_end].split() == text.split()
        n_whitespace += sum(s.match == "whitespace" for s in spans)
        n_total += len(spans)
    # the dataset notes ~2% of chunks only match with whitespace-flexible matching
    assert 0 < n_whitespace / n_total < 0.05


def test_real_traces_get_labels_with_prevalence_near_ten_percent():
    traces = _real_traces()
    splits = {pid: "train" for pid in PROBLEMS}
    labels = build_label_table(traces, AnchorLabelConfig(), splits)
    assert len(labels) == sum(t.n_chunks for t in traces)
    scored = labels[labels["in_label_set"]]
    assert not labels.loc[labels["is_last_chunk"], "anchor"].any()
    per_trace = scored.groupby("trace_key")["anchor"].mean()
    assert (per_trace > 0).all(), "every real trace has at least one anchor"
    assert 0.05 < scored["anchor"].mean() < 0.2
