-- Backtracking lag probes and baselines: mean and spread of each metric across seeds (each seed is
-- another split of the same chains, so the seeds' spread is not a sampling interval and none is
-- given here). Intervals are in backtracking_margin_summary (Python, chains/intervals.py): chain
-- problems resampled, the seed-averaged AUROC margin recomputed on every draw.
SELECT
    model,
    layer,
    lag,
    probe,
    metric,
    avg(value) AS mean,
    stddev_samp(value) AS sd,
    count(*) AS n_seeds,
    min(value) AS seed_min,
    max(value) AS seed_max
FROM {{ source('backtracking_probe_metrics') }}
WHERE value IS NOT NULL AND NOT isnan(value)
GROUP BY model, layer, lag, probe, metric
ORDER BY model, layer, lag, probe, metric
