-- The tripwire status of each model x setting cell of the scaling summary: 'pass', or 'FAIL: ' and
-- every failing tripwire with its reason, over every layer of the cell and the dataset-wide rows
-- (model_key = 'all'), which belong to every cell. Findings (signal_beats_null) are listed apart.
WITH cells AS (
    SELECT DISTINCT model_key, setting FROM {{ source('tripwire_results') }} WHERE model_key <> 'all'
),
scoped AS (
    SELECT c.model_key, c.setting, t.tripwire, t.passed, t.reason_code
    FROM cells AS c
    JOIN {{ source('tripwire_results') }} AS t
      ON (t.model_key = c.model_key AND t.setting = c.setting) OR t.model_key = 'all'
)
SELECT
    model_key,
    setting,
    CASE WHEN bool_and(passed) FILTER (WHERE tripwire <> 'signal_beats_null') THEN 'pass'
         ELSE 'FAIL: ' || string_agg(DISTINCT tripwire || ':' || reason_code, ', ')
                          FILTER (WHERE NOT passed AND tripwire <> 'signal_beats_null')
    END AS tripwire_status,
    coalesce(string_agg(DISTINCT tripwire || ':' || reason_code, ', ')
             FILTER (WHERE NOT passed AND tripwire = 'signal_beats_null'), '') AS findings
FROM scoped
GROUP BY model_key, setting
ORDER BY model_key, setting
