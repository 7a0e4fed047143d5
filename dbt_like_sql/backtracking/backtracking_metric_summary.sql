-- Backtracking lag probes and baselines: mean, spread and interval of each metric across seeds
-- (each seed is another split of the chains). The interval is mean +- 1.96 x standard error over
-- seeds (NULL with one seed), beside the seeds' min and max.
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
    max(value) AS seed_max,
    avg(value) - 1.96 * stddev_samp(value) / sqrt(count(*)) AS ci_low,
    avg(value) + 1.96 * stddev_samp(value) / sqrt(count(*)) AS ci_high
FROM {{ source('backtracking_probe_metrics') }}
WHERE value IS NOT NULL AND NOT isnan(value)
GROUP BY model, layer, lag, probe, metric
ORDER BY model, layer, lag, probe, metric
