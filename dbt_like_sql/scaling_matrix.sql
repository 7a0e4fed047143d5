-- The model x setting matrix: best non-position probe by mean PR-AUC (over layers), its margin over
-- the position baseline at that layer with the bootstrap interval, and whether all tripwires passed
-- for that model and setting.
WITH candidates AS (
    SELECT s.model_key, s.layer_key, s.setting, s.probe, s.mean AS pr_auc, s.std AS pr_auc_std, s.n_seeds
    FROM {{ ref('probe_metric_summary') }} AS s
    WHERE s.metric = 'pr_auc' AND s.probe <> 'position_baseline'
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY model_key, setting ORDER BY pr_auc DESC, probe, layer_key) AS rank
    FROM candidates
),
position AS (
    SELECT model_key, layer_key, setting, mean AS position_pr_auc
    FROM {{ ref('probe_metric_summary') }}
    WHERE metric = 'pr_auc' AND probe = 'position_baseline'
),
tripwires AS (
    SELECT model_key, setting, bool_and(passed) AS tripwires_passed,
           coalesce(string_agg(DISTINCT tripwire || ':' || reason_code, ', ') FILTER (WHERE NOT passed), '') AS failing
    FROM {{ source('tripwire_results') }}
    GROUP BY model_key, setting
)
SELECT
    r.model_key,
    r.setting,
    r.probe AS best_probe,
    r.layer_key AS best_layer,
    r.pr_auc,
    r.pr_auc_std,
    p.position_pr_auc,
    m.margin,
    m.ci_low,
    m.ci_high,
    r.n_seeds,
    coalesce(t.tripwires_passed, false) AS tripwires_passed,
    coalesce(t.failing, 'not evaluated') AS tripwire_failures
FROM ranked AS r
LEFT JOIN position AS p USING (model_key, layer_key, setting)
LEFT JOIN {{ ref('probe_margin_summary') }} AS m USING (model_key, layer_key, setting, probe)
LEFT JOIN tripwires AS t USING (model_key, setting)
WHERE r.rank = 1
ORDER BY r.model_key, r.setting
