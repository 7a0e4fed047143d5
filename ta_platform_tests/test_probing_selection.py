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


def _shifted_split(predictions):
    """The same rows with another problem split: test problems are those with id % 3 == 1."""
    problem = predictions["problem_id"].astype(int)
    return predictions.assign(split=np.where(problem % 3 == 1, "test", np.where(problem % 3 == 2, "val", "train")))


def test_interval_is_of_the_seed_averaged_margin_not_an_average_of_seed_endpoints():
    """Two seeds with different test problems (20 each): the point is the mean of the seeds' margins, and
    the interval resamples the union of 40 problems, so it is about 1/sqrt(2) as wide as each seed's own.
    Averaging the seeds' endpoints gives exactly the mean width (ratio 1.0): this fails on it."""
    first = _predictions(seeds=(0,), n_problems=60, scheme="holdout", rng_seed=0)
    second = _shifted_split(_predictions(seeds=(1,), n_problems=60, scheme="holdout", rng_seed=100))
    both = pd.concat([first, second], ignore_index=True)
    singles = [next(probe_cells(p, _selection(p), n_resamples=400, seed=3).itertuples()) for p in (first, second)]
    (joint,) = probe_cells(both, _selection(both), n_resamples=400, seed=3).itertuples()
    assert joint.n_seeds == 2 and joint.n_test_problems == 20
    assert joint.margin_position == pytest.approx(np.mean([s.margin_position for s in singles]))
    widths = [s.ci_high_position - s.ci_low_position for s in singles]
    assert joint.ci_high_position - joint.ci_low_position < 0.9 * np.mean(widths), widths
    assert joint.ci_low_position != pytest.approx(np.mean([s.ci_low_position for s in singles]), abs=1e-3)


@pytest.mark.parametrize("scheme", ["folds", "holdout"])
def test_interval_resamples_problems_not_sentences(scheme):
    """Every sentence copied 5 times: the same problems, so the same problem-bootstrap interval (the
    margin and every draw are unchanged by copying all rows alike); resampling sentences would see 5x
    the rows and give an interval about 1/sqrt(5) as wide."""
    predictions = _predictions(n_problems=15, scheme=scheme)
    copied = pd.concat([predictions.assign(chunk_idx=predictions["chunk_idx"] + 100 * k) for k in range(5)],
                       ignore_index=True)
    (cell,) = probe_cells(predictions, _selection(predictions), n_resamples=300, seed=3).itertuples()
    (same,) = probe_cells(copied, _selection(copied), n_resamples=300, seed=3).itertuples()
    assert same.margin_position == pytest.approx(cell.margin_position)
    assert (same.ci_low_position, same.ci_high_position) == pytest.approx((cell.ci_low_position,
                                                                           cell.ci_high_position))
    assert cell.ci_high_position - cell.ci_low_position > 0.05  # a real interval, not a point


def test_each_fold_model_is_scored_on_its_own_rows():
    """Leave-problems-out: each fold's model has its own C and scale of decision values. Rescaling one
    fold's scores (a monotone map: the same model ranking) changes nothing; one PR-AUC over the pooled
    folds would change (fold0's rows would all rank above the others)."""
    predictions = _predictions(n_problems=12)
    rescaled = predictions.copy()
    fold0 = (rescaled["fold"] == "fold0").to_numpy()
    rescaled.loc[fold0, "score"] = rescaled.loc[fold0, "score"] * 10.0 + 50.0
    (cell,) = probe_cells(predictions, _selection(predictions), n_resamples=200, seed=1).itertuples()
    (same,) = probe_cells(rescaled, _selection(rescaled), n_resamples=200, seed=1).itertuples()
    for column in ("probe_pr_auc", "position_pr_auc", "margin_position", "ci_low_position", "ci_high_position"):
        assert getattr(same, column) == pytest.approx(getattr(cell, column)), column


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
