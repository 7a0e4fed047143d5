"""``ta-platform bench paper-scale`` at a small fraction: the JSON shape, and the anchors probe stage
recovering the planted signal (within 0.03 of the planted score's own AUROC on the same test rows).

The preferences and backtracking studies are not run here, to keep CI's time for the rest (even at
their minimum sizes they fit 9 layers x 10 alphas x 11 folds at 5,376 dims, or 5 layers x 7 lags at
4,096); the engine paths they call have their own agreement tests against sklearn.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ta_platform.benchmarks.synthetic_activations import LowRankActivations, write_units
from ta_platform.cli.bench_paper_scale import growth_line, growth_of
from ta_platform.cli.main import main
from ta_platform.extraction.store import load_partition


def test_units_round_trip_through_the_store_in_bfloat16(tmp_path):
    generator = LowRankActivations(dims=96, layers=(3, 5), rank=8, seed=1)
    written = write_units(tmp_path, "m", generator, [("a", 4), ("b", 7)], storage_dtype="bfloat16")
    assert list(written.rows["trace_key"]) == ["a"] * 4 + ["b"] * 7
    for layer, folder in written.folders.items():
        partition = load_partition(folder)
        assert partition.dtype == "bfloat16" and partition.shape == (11, 96)
        expected = generator.rows(generator.factors(1, 7), 1, layer)
        stored = partition.rows(np.arange(4, 11))
        assert np.max(np.abs(stored - expected) / np.abs(expected).max(axis=1, keepdims=True)) <= 2.0 ** -8
    # the planted score is the factors' projection: a different unit's factors would not give it
    assert np.allclose(written.rows["planted"][4:], generator.factors(1, 7) @ generator.direction(), atol=1e-5)


@pytest.mark.slow  # the anchors probe stage at 5,120 dims: ~20 s since the engine's seeds-as-heads and preconditioning
def test_bench_paper_scale_small_fraction(tmp_path, capsys):
    # Rank 16: ~900 training rows (fraction 0.05, leave-problems-out over 6 problems) estimate 16 directions
    # well; at the default rank 64 the probe falls ~0.05 short of the planted AUROC at this size.
    code = main(["bench", "paper-scale", "--study", "anchors", "--fraction", "0.05", "--seeds", "1", "--rank", "16",
                 "--work-dir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert record["fraction"] == 0.05
    anchors = record["studies"]["anchors"]
    assert set(anchors) == {"rows", "dims", "layers", "heads", "seconds", "peak_rss_gb", "disk_gb", "planted",
                            "recovered"}
    assert anchors["dims"] == 5120 and anchors["layers"] == 3 and anchors["rows"] > 1000
    assert anchors["heads"] > 0 and anchors["seconds"] > 0 and 0 < anchors["peak_rss_gb"] < 8
    # bf16: 2 bytes a value, 3 layers
    assert abs(anchors["disk_gb"] * 2**30 - anchors["rows"] * 5120 * 2 * 3) < 0.01 * 2**30
    assert 0.75 < anchors["planted"] < 0.99
    assert abs(anchors["planted"] - anchors["recovered"]) <= 0.03, anchors
    assert not list(tmp_path.iterdir()), "the bench deletes its synthetic partitions"
    assert any("planted" in line and "recovered" in line for line in out[:-1])
    # 6 problems: a 15% test split would hold 1 problem, so cv_mode "auto" ran leave-problems-out
    assert any("leave_problems_out (5 folds)" in line for line in out[:-1]), out


def test_growth_is_flagged_when_the_fractions_ran_different_schemes():
    def record(rows, scheme):
        return {"rows": rows, "seconds": 3.0 * rows, "probe_seconds": 2.0 * rows, "peak_rss_gb": 0.5 * rows**0.5,
                "scheme": scheme}

    same = growth_of([record(rows, "holdout") for rows in (100, 200, 400)])
    assert same["comparable"] and same["seconds"] == pytest.approx(1.0) and same["peak_rss_gb"] == pytest.approx(0.5)
    assert "NOT comparable" not in growth_line("anchors", same, [0.25, 0.5, 1.0], ["holdout"] * 3)
    schemes = ["leave_problems_out (5 folds)", "leave_problems_out (5 folds)", "holdout"]
    mixed = growth_of([record(rows, scheme) for rows, scheme in zip((100, 200, 400), schemes, strict=True)])
    assert not mixed["comparable"]
    line = growth_line("anchors", mixed, [0.25, 0.5, 1.0], schemes)
    assert "NOT comparable" in line and "0.5: leave_problems_out (5 folds)" in line and "1: holdout" in line


@pytest.mark.slow  # starts the bench in a subprocess and waits for its generation stage (~10 s)
def test_a_terminated_bench_stops_its_child_and_deletes_its_partitions(tmp_path):
    """A scheduler's SIGTERM mid-run: at full scale the partitions are ~20 GB of bf16 files and the child
    goes on writing them unless the bench stops it, so both must be gone when the bench exits."""
    import os
    import signal
    import subprocess
    import sys
    import time

    work = tmp_path / "work"
    bench = subprocess.Popen([sys.executable, "-m", "ta_platform.cli.main", "bench", "paper-scale", "--study",
                              "anchors", "--fraction", "0.05", "--seeds", "1", "--rank", "16", "--work-dir", str(work)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    partitions = work / "anchors-f0.05"
    while not (partitions.exists() and any(partitions.rglob("shard-*.bin"))) and time.monotonic() < deadline:
        assert bench.poll() is None, bench.communicate()
        time.sleep(0.2)
    assert any(partitions.rglob("shard-*.bin")), "the generation stage wrote no partition within 120 s"
    children = subprocess.run(["pgrep", "-f", f"paper_scale --child .*{work}"], capture_output=True, text=True)
    assert children.stdout.split(), "the bench runs each stage in a child interpreter"
    bench.send_signal(signal.SIGTERM)
    bench.communicate(timeout=60)
    assert bench.returncode == 128 + signal.SIGTERM
    assert not partitions.exists(), list(partitions.rglob("*"))
    for pid in children.stdout.split():
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", pid
