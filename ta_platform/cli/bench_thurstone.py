"""``ta-platform bench thurstone``: the platform's Thurstonian fit vs the Adam reference, same data.

Simulates 10,000 tasks with known utilities and 50,000 single comparisons of uniformly random pairs
(plus uniformly random held-out pairs), then fits with (1) ``fit_thurstonian`` (vectorised MAP,
analytic gradient, L-BFGS-B, prior chosen by held-out log-loss) and (2) the common recipe (Adam on
soft labels, 1000 full-batch steps). Prints seconds, held-out accuracy against the Bayes-optimal
accuracy (true utilities), log-loss and Spearman with the true mu. ``--json``: the last line is one
JSON object. Targets: fit <= 5 s, accuracy within 0.06 of Bayes, >= 4x faster than the reference
with equal or better accuracy.
"""

from __future__ import annotations

import argparse
import json

TARGET_FIT_SECONDS = 5.0
TARGET_ACCURACY_GAP = 0.06
TARGET_SPEEDUP = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--comparisons", type=int, default=50_000)
    parser.add_argument("--heldout", type=int, default=5_000, help="held-out single comparisons")
    parser.add_argument("--reference-steps", type=int, default=1000)
    parser.add_argument("--skip-reference", action="store_true", help="platform fit only (no speedup)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")


def _evaluate(utilities, truth, heldout) -> dict[str, float]:
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    from ta_platform.preferences.thurstone import pairwise_metrics, probability_first_wins

    index = pd.Index(utilities["task_id"])
    a, b = index.get_indexer(heldout["task_a"]), index.get_indexer(heldout["task_b"])
    p = probability_first_wins(utilities["mu"].to_numpy(), utilities["sigma"].to_numpy(), a, b)
    metrics = pairwise_metrics(p, heldout["winner"].to_numpy() == "a")
    mu_true = truth.set_index("task_id")["mu"].reindex(index).to_numpy()
    rho = spearmanr(utilities["mu"].to_numpy(), mu_true).statistic
    return {"heldout_accuracy": metrics["accuracy"], "heldout_log_loss": metrics["log_loss"],
            "spearman_true": float(rho if np.isfinite(rho) else float("nan"))}


def run(args: argparse.Namespace) -> int:
    from ta_platform.preferences.reference_fit import fit_thurstonian_adam
    from ta_platform.preferences.simulate import bayes_accuracy, simulate_comparisons, simulate_utilities
    from ta_platform.preferences.thurstone import fit_thurstonian, pairwise_metrics

    truth = simulate_utilities(args.tasks, seed=args.seed)
    data = simulate_comparisons(truth, args.comparisons, n_heldout=args.heldout, seed=args.seed + 1)
    train, heldout = data[~data["heldout"]], data[data["heldout"]]
    bayes = bayes_accuracy(heldout["p_true"].to_numpy())
    bayes_log_loss = pairwise_metrics(heldout["p_true"].to_numpy(), heldout["winner"].to_numpy() == "a")["log_loss"]
    print(f"simulated {args.tasks} tasks, {len(train)} training comparisons, {len(heldout)} held-out comparisons")
    print(f"Bayes-optimal (true utilities): held-out accuracy {bayes:.4f}, log-loss {bayes_log_loss:.4f}")

    fit = fit_thurstonian(train[["task_a", "task_b", "winner"]], truth["task_id"],
                          heldout=heldout[["task_a", "task_b", "winner"]], seed=args.seed)
    platform = {"fit_seconds": fit.fit_seconds, **_evaluate(fit.utilities, truth, heldout),
                "prior_strength": fit.prior_strength, "converged": fit.converged}
    print(f"platform  (MAP, L-BFGS-B): {platform['fit_seconds']:6.2f} s  accuracy {platform['heldout_accuracy']:.4f}"
          f"  log-loss {platform['heldout_log_loss']:.4f}  spearman {platform['spearman_true']:.4f}"
          f"  prior {fit.prior_strength:g}  converged {fit.converged}")
    result = {"n_tasks": args.tasks, "n_comparisons": len(train), "n_heldout": len(heldout),
              "bayes_accuracy": bayes, "bayes_log_loss": bayes_log_loss, **platform,
              "accuracy_gap_to_bayes": bayes - platform["heldout_accuracy"]}
    if not args.skip_reference:
        reference_utilities, seconds = fit_thurstonian_adam(train[["task_a", "task_b", "winner"]], truth["task_id"],
                                                            steps=args.reference_steps, seed=args.seed)
        reference = {"fit_seconds": seconds, **_evaluate(reference_utilities, truth, heldout)}
        print(f"reference (Adam, {args.reference_steps} steps, 1 thread): {seconds:6.2f} s  accuracy "
              f"{reference['heldout_accuracy']:.4f}  log-loss {reference['heldout_log_loss']:.4f}"
              f"  spearman {reference['spearman_true']:.4f}")
        result.update({f"reference_{k}": v for k, v in reference.items()})
        result["speedup_vs_reference"] = seconds / platform["fit_seconds"]
        print(f"speedup {result['speedup_vs_reference']:.1f}x; accuracy difference "
              f"{platform['heldout_accuracy'] - reference['heldout_accuracy']:+.4f}")
    else:
        result["speedup_vs_reference"] = float("nan")
    checks = {
        "fit_within_5s": platform["fit_seconds"] <= TARGET_FIT_SECONDS,
        "accuracy_within_0.06_of_bayes": result["accuracy_gap_to_bayes"] <= TARGET_ACCURACY_GAP,
    }
    if not args.skip_reference:
        checks["speedup_at_least_4x"] = result["speedup_vs_reference"] >= TARGET_SPEEDUP
        checks["accuracy_at_least_reference"] = platform["heldout_accuracy"] >= result["reference_heldout_accuracy"]
    for name, ok in checks.items():
        print(f"target {name}: {'PASS' if ok else 'FAIL'}")
    result["targets_met"] = all(checks.values())
    if args.json:
        print(json.dumps(result, sort_keys=True, default=float))
    return 0
