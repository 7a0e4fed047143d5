-- One row per tripwire: how many scopes (model, layer, setting) it ran on, how many failed and why.
SELECT
    tripwire,
    count(*) AS n_scopes,
    count(*) FILTER (WHERE NOT passed) AS n_failed,
    coalesce(string_agg(DISTINCT reason_code, ', ') FILTER (WHERE NOT passed), '') AS failing_reasons,
    bool_and(passed) AS all_passed
FROM {{ source('tripwire_results') }}
GROUP BY tripwire
ORDER BY tripwire
