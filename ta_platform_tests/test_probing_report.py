"""Markdown table and PNG of the model x setting matrix."""

import pandas as pd
import pytest

from ta_platform.probing.report import best_probe_cells, markdown_matrix, matrix_png

COLUMNS = (
    "model_key layer_key setting probe metric mean std n_seeds margin ci_low ci_high tripwire_status".split()
)
NO_MARGIN = (None, None, None)


def _rows():
    rows = []
    for model, status in (("qwen-14b", "pass"), ("llama-8b", "fail: memorisation")):
        for setting in ("correct", "incorrect"):
            for layer, bonus in (("L24", 0.0), ("L36", 0.05)):
                cell = (model, layer, setting)
                rows += [
                    (*cell, "position_baseline", "pr_auc", 0.16, 0.01, 5, *NO_MARGIN, status),
                    (
                        *cell,
                        "linear_probe",
                        "pr_auc",
                        0.20 + bonus,
                        0.02,
                        5,
                        0.04 + bonus,
                        0.01 + bonus,
                        0.07 + bonus,
                        status,
                    ),
                    (*cell, "text_baseline", "pr_auc", 0.10, 0.01, 5, -0.06, -0.09, -0.03, status),
                    (*cell, "linear_probe", "auroc", 0.70, 0.02, 5, 0.1, 0.05, 0.15, status),
                ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_best_probe_per_cell_uses_best_layer_and_same_layer_baseline():
    cells = best_probe_cells(_rows())
    assert len(cells) == 4
    assert set(cells["probe"]) == {"linear_probe"} and set(cells["layer_key"]) == {"L36"}
    assert cells["mean"].tolist() == pytest.approx([0.25] * 4)
    assert cells["baseline_mean"].tolist() == pytest.approx([0.16] * 4)


def test_markdown_matrix():
    text = markdown_matrix(_rows())
    lines = text.splitlines()
    assert lines[0].startswith("| model | setting | layer | best probe |")
    assert sum(line.startswith("| qwen-14b") for line in lines) == 2
    assert "+0.0900 [+0.0600, +0.1200]*" in text
    assert "fail: memorisation" in text


def test_png_bytes():
    png = matrix_png(_rows())
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_missing_columns_rejected():
    with pytest.raises(ValueError):
        best_probe_cells(_rows().drop(columns=["tripwire_status"]))
