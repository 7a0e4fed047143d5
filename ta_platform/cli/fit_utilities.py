"""``ta-platform fit-utilities PAIRS --out UTILITIES``: Thurstonian utilities from pairwise outcomes.

Reads CSV or Parquet (``task_a, task_b, winner`` in {a, b}; one row per comparison; an optional
``heldout`` column marks held-out rows), fits mu and sigma per task, writes ``task_id, mu, sigma`` in
the format of the output extension (atomically) and prints the fit summary. Bad input gives one
line on stderr naming the file and row, exit status 1, and no output file.
"""

from __future__ import annotations

import argparse
import json
import sys

from ta_platform.common.faults import DataFault


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pairs", help="outcomes file (.csv or .parquet)")
    parser.add_argument("--out", required=True, help="utilities file to write (.csv or .parquet)")
    parser.add_argument("--tasks", help="known task ids (.txt one per line, or a table with task_id); "
                                        "outcomes naming other ids are rejected")
    parser.add_argument("--prior-grid", default=None,
                        help="comma-separated prior strengths on mu to choose from by held-out log-loss")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split (no heldout column)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ta_platform.preferences.outcomes_io import (
        read_outcomes,
        read_task_ids,
        table_format,
        write_utilities,
    )
    from ta_platform.preferences.thurstone import DEFAULT_PRIOR_GRID, fit_thurstonian

    try:
        table_format(args.out)  # fail before any work on an unsupported output format
        grid = DEFAULT_PRIOR_GRID
        if args.prior_grid:
            try:
                grid = tuple(float(v) for v in args.prior_grid.split(","))
            except ValueError:
                print(f"error: --prior-grid {args.prior_grid!r} is not a comma-separated list of numbers",
                      file=sys.stderr)
                return 2
        task_ids = read_task_ids(args.tasks) if args.tasks else None
        outcomes = read_outcomes(args.pairs, task_ids)
        fit = fit_thurstonian(outcomes, task_ids, prior_grid=grid, seed=args.seed, source=str(args.pairs))
        write_utilities(fit.utilities, args.out)
    except DataFault as fault:
        print(f"error: {fault}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = fit.summary()
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=float))
    else:
        print(f"fitted {summary['n_tasks']} tasks from {summary['n_comparisons']} comparisons "
              f"({summary['n_pairs']} pairs) in {summary['fit_seconds']:.2f} s -> {args.out}")
        print(f"prior strength {summary['prior_strength']:g}, converged {summary['converged']}, "
              f"{summary['heldout_source']} accuracy {summary['heldout_accuracy']:.3f}, "
              f"log-loss {summary['heldout_log_loss']:.3f} (n={summary['n_heldout']}), "
              f"noise ceiling {summary['noise_ceiling']:.3f}")
    return 0
