-- Each probe's PR-AUC margin over the position baseline across seeds: the mean margin, the mean
-- bootstrap interval (over test problems) and how many seeds' intervals exclude zero.
SELECT
    model_key,
    layer_key,
    setting,
    probe,
    avg(margin) AS margin,
    avg(ci_low) AS ci_low,
    avg(ci_high) AS ci_high,
    count(*) FILTER (WHERE ci_low > 0) AS n_seeds_ci_above_zero,
    count(DISTINCT seed) AS n_seeds
FROM {{ source('probe_margins') }}
WHERE metric = 'pr_auc'
GROUP BY model_key, layer_key, setting, probe
ORDER BY model_key, layer_key, setting, probe
