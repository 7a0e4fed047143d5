-- Mean and spread across seeds of every probe metric, per model, layer, setting and probe.
SELECT
    model_key,
    layer_key,
    setting,
    probe,
    metric,
    avg(value) AS mean,
    coalesce(stddev_samp(value), 0.0) AS std,
    min(value) AS min,
    max(value) AS max,
    count(DISTINCT seed) AS n_seeds
FROM {{ source('probe_metrics') }}
WHERE isfinite(value)
GROUP BY model_key, layer_key, setting, probe, metric
ORDER BY model_key, layer_key, setting, probe, metric
