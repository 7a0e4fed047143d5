-- Per model, layer, setting and probe: the across-seed metric summary next to the probe's margin
-- over the position baseline (with its bootstrap interval) and the tripwire status of that slice.
-- scaling_summary picks the best probe per model x setting from these rows.
WITH tripwires AS (
    SELECT
        model_key,
        layer_key,
        setting,
        CASE WHEN bool_and(passed) THEN 'pass'
             ELSE 'FAIL: ' || string_agg(DISTINCT tripwire || ':' || reason_code, ', ') FILTER (WHERE NOT passed)
        END AS tripwire_status
    FROM {{ source('tripwire_results') }}
    GROUP BY model_key, layer_key, setting
)
SELECT
    s.model_key,
    s.layer_key,
    s.setting,
    s.probe,
    s.metric,
    s.mean,
    s.std,
    s.n_seeds,
    m.margin,
    m.ci_low,
    m.ci_high,
    coalesce(t.tripwire_status, 'not evaluated') AS tripwire_status
FROM {{ ref('probe_metric_summary') }} AS s
LEFT JOIN {{ ref('probe_margin_summary') }} AS m USING (model_key, layer_key, setting, probe)
LEFT JOIN tripwires AS t USING (model_key, layer_key, setting)
ORDER BY s.model_key, s.setting, s.layer_key, s.probe, s.metric
