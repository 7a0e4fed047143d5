-- Skipped items per pipeline stage and fault kind (load, align, extract), with the items named.
SELECT
    stage,
    kind,
    count(*) AS n_skipped,
    string_agg(item, ', ' ORDER BY item) AS items
FROM {{ source('faults') }}
GROUP BY stage, kind
ORDER BY stage, kind
