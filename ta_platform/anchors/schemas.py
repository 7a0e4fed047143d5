"""Pandera schemas of the thought-anchor tables; asset checks validate every materialisation."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.pandas import Check, Column

SETTINGS = ["correct", "incorrect"]
DATA_SPLITS = ["train", "val", "test"]

problem_index_schema = pa.DataFrameSchema(
    {
        "trace_key": Column(str, unique=True),
        "model": Column(str),
        "split": Column(str, Check.isin(["correct_base_solution", "incorrect_base_solution"])),
        "setting": Column(str, Check.isin(SETTINGS)),
        "problem_id": Column(str),
        "is_correct": Column(bool),
        "n_sentences": Column(int, Check.gt(0)),
        "think_start": Column(int, Check.ge(0)),
        "think_end": Column(int),
        "source": Column(str),
        "content_hash": Column(str, Check.str_length(64, 64)),
    },
    checks=[Check(lambda df: df["think_end"] > df["think_start"], error="empty think region")],
    strict=False,
)

sentence_labels_schema = pa.DataFrameSchema(
    {
        "trace_key": Column(str),
        "problem_id": Column(str),
        "setting": Column(str, Check.isin(SETTINGS)),
        "chunk_idx": Column(int, Check.ge(0)),
        "n_chunks": Column(int, Check.gt(0)),
        "rel_position": Column(float, Check.in_range(0.0, 1.0)),
        "function_tag": Column(str),
        "text": Column(str, Check.str_length(min_value=1)),
        "counterfactual_importance": Column(float, nullable=False),
        "resampling_importance": Column(float, nullable=False),
        "in_label_set": Column(bool),
        "anchor": Column(int, Check.isin([0, 1])),
        "data_split": Column(str, Check.isin(DATA_SPLITS)),
    },
    unique=["trace_key", "chunk_idx"],
    strict=False,
    coerce=True,
)

sentence_spans_schema = pa.DataFrameSchema(
    {
        "trace_key": Column(str),
        "chunk_idx": Column(int, Check.ge(0)),
        "char_start": Column(int, Check.ge(0)),
        "char_end": Column(int, Check.ge(1)),
        "match": Column(str, Check.isin(["exact", "whitespace"])),
    },
    unique=["trace_key", "chunk_idx"],
    strict=False,
    coerce=True,
)

token_spans_schema = pa.DataFrameSchema(
    {
        "tokenizer": Column(str),
        "trace_key": Column(str),
        "chunk_idx": Column(int, Check.ge(0)),
        "tok_start": Column(int, Check.ge(0)),
        "tok_end": Column(int, Check.ge(1)),
        "n_tokens": Column(int, Check.ge(1)),
    },
    unique=["tokenizer", "trace_key", "chunk_idx"],
    strict=False,
    coerce=True,
)


def schema_failures(schema: pa.DataFrameSchema, frame) -> list[str]:
    """Validate lazily and return every failure as a readable line (empty list when valid)."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        return [f"{row.get('column')}: {row.get('check')} (case {row.get('failure_case')!r}, index {row.get('index')})"
                for row in cases.head(50).to_dict("records")]
    return []
