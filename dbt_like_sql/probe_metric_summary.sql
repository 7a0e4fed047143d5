-- Mean of every probe metric across seeds, per probe config, model, layer, setting and probe. Rows of
-- different configs are never averaged together (config_hash); the spread is only given with two
-- seeds or more (NULL otherwise, never a fake 0), and the seeds averaged are listed.
SELECT
    config_hash,
    model_key,
    layer_key,
    setting,
    probe,
    metric,
    avg(value) AS mean,
    CASE WHEN count(DISTINCT seed) >= 2 THEN stddev_samp(value) END AS std,
    min(value) AS min,
    max(value) AS max,
    count(DISTINCT seed) AS n_seeds,
    string_agg(DISTINCT CAST(seed AS VARCHAR), ',' ORDER BY CAST(seed AS VARCHAR)) AS seeds
FROM {{ source('probe_metrics') }}
WHERE isfinite(value)
GROUP BY config_hash, model_key, layer_key, setting, probe, metric
ORDER BY config_hash, model_key, layer_key, setting, probe, metric
