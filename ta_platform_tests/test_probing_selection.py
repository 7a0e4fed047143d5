"""Layer and probe chosen on validation, reported on test; intervals over problems of the seed-averaged margin."""

import numpy as np
import pandas as pd
import pytest

from ta_platform.probing.report import markdown_report, matrix_png
from ta_platform.probing.selection import choose_per_fold, probe_cells

PROBES = ("position_baseline", "text_baseline", "linear_probe", "mlp_probe")


def _predictions(seeds=(0,), n_problems=12, scheme="folds", rng_seed=0, test_winner="mlp_probe"):
    """Predictions of two layers x four probes; L1's linear probe is the real signal, and
    ``test_winner`` at L2 scores perfectly on TEST rows only (a candidate that selection on test would pick)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in seeds:
        for problem in range(n_problems):
            fold = f"fold{problem % 3}" if scheme == "folds" else "holdout"
            split = "test" if scheme == "folds" or problem % 3 == 0 else ("val" if problem % 3 == 1 else "train")
            labels = (rng.random(20) < 0.2).astype(int)
            labels[0] = 1
            for layer in ("L1", "L2"):
                for probe in PROBES:
                    if probe == "linear_probe" and layer == "L1":
                        score = labels + rng.normal(0, 0.6, 20)
                    elif probe == test_winner and layer == "L2":
                        score = labels * 5.0 + rng.normal(0, 0.01, 20)
                    else:
                        score = rng.normal(0, 1, 20)
                    for chunk in range(20):
                        rows.append((seed, "m", layer, "correct", f"t{problem}", chunk, str(problem), probe,
                                     float(score[chunk]), split, fold, int(labels[chunk])))
    return pd.DataFrame(rows, columns=["seed", "model_key", "layer_key", "setting", "trace_key", "chunk_idx",
                                       "problem_id", "probe", "score", "split", "fold", "label"])


def _selection(predictions, favourite=("L1", "linear_probe")):
    """Validation PR-AUC per (seed, layer, probe, fold): the favourite is best on validation."""
    keys = predictions[["seed", "model_key", "layer_key", "setting", "probe", "fold"]].drop_duplicates()
    best = (keys["layer_key"] == favourite[0]) & (keys["probe"] == favourite[1])
    return keys.assign(val_pr_auc=np.where(best, 0.6, 0.3))


def test_choice_is_made_on_validation_even_when_another_candidate_wins_on_test():
    predictions = _predictions()
    cells = probe_cells(predictions, _selection(predictions), n_resamples=200)
    (cell,) = cells.itertuples()
    assert cell.selected == "L1 linear_probe (3/3)"  # the mlp at L2 is perfect on test, never chosen
    assert cell.probe_pr_auc < 0.99
    assert cell.selected_on == "inner validation split of each fold" and cell.scheme == "leave-problems-out (3 folds)"
    assert cell.n_test_problems == 12 and cell.n_seeds == 1 and np.isnan(cell.probe_std)  # no std from one seed
    # the baselines are random here: the chosen probe's margin over each excludes 0
    assert cell.ci_low_position > 0 and cell.ci_low_text > 0
    assert cell.ci_low_position <= cell.margin_position <= cell.ci_high_position


def test_choose_per_fold_ignores_baselines_and_breaks_ties_by_name():
    selection = pd.DataFrame({"fold": ["f"] * 4, "layer_key": ["L2", "L1", "L1", "L1"],
                              "probe": ["linear_probe", "linear_probe", "mlp_probe", "position_baseline"],
                              "val_pr_auc": [0.5, 0.5, 0.4, 0.9]})
    assert choose_per_fold(selection) == {"f": ("L1", "linear_probe")}


def test_holdout_scores_only_test_rows_and_counts_test_problems():
    predictions = _predictions(scheme="holdout")
    (cell,) = probe_cells(predictions, _selection(predictions), n_resamples=100).itertuples()
    assert cell.scheme == "holdout" and cell.selected_on == "validation split"
    assert cell.n_test_problems == 4  # problems 0, 3, 6, 9


def test_interval_is_over_problems_of_the_seed_averaged_margin():
    one = _predictions(seeds=(0,))
    (single,) = probe_cells(one, _selection(one), n_resamples=400, seed=3).itertuples()
    # two identical seeds: the seed average is the same statistic, so the same interval (an average of
    # two seeds' bootstrap endpoints would be too, but here the draws are shared problems, not endpoints)
    twice = pd.concat([one, one.assign(seed=1)], ignore_index=True)
    (double,) = probe_cells(twice, _selection(twice), n_resamples=400, seed=3).itertuples()
    assert double.margin_position == pytest.approx(single.margin_position)
    assert (double.ci_low_position, double.ci_high_position) == pytest.approx(
        (single.ci_low_position, single.ci_high_position))
    assert double.n_seeds == 2 and double.probe_std == pytest.approx(0.0)
    # more problems -> a narrower interval (the unit of resampling is the problem)
    many = _predictions(n_problems=96)
    (narrow,) = probe_cells(many, _selection(many), n_resamples=400, seed=3).itertuples()
    assert narrow.n_test_problems == 96
    width = single.ci_high_position - single.ci_low_position
    assert narrow.ci_high_position - narrow.ci_low_position < 0.6 * width  # ~1/sqrt(8) of it


def test_report_states_the_gate_and_every_number_of_a_cell(tmp_path):
    predictions = _predictions(seeds=(0, 1))
    cells = probe_cells(predictions, _selection(predictions), n_resamples=100).assign(tripwire_status="pass")
    report = markdown_report(cells, "FAIL, NOT RELEASED: probes:split_leakage (problem_leak)",
                             generated="now", averaged="seeds 0, 1 of probe config abc")
    assert "**Release gate: FAIL, NOT RELEASED: probes:split_leakage (problem_leak)**" in report
    row = next(line for line in report.splitlines() if line.startswith("| m |"))
    for text in ("leave-problems-out (3 folds)", "| 12 |", "L1 linear_probe (6/6) (inner validation split of each "
                 "fold)", "(2 seeds)", " ± ", "*", "| pass |"):
        assert text in row, (text, row)
    assert matrix_png(cells, "PASS (3 checks; 0 warning(s))")[:8] == b"\x89PNG\r\n\x1a\n"
