-- Backtracking lag probe minus each baseline, per target (span membership, onset): mean margin over
-- seeds and the mean of the per-seed chain-bootstrap bounds; excludes_zero only when every seed's
-- chain-bootstrap interval excludes 0 on the same side.
SELECT
    model,
    layer,
    lag,
    target,
    baseline,
    metric,
    avg(margin) AS mean_margin,
    avg(ci_low) AS mean_ci_low,
    avg(ci_high) AS mean_ci_high,
    count(*) AS n_seeds,
    bool_and(ci_low > 0) AS above_zero_every_seed,
    bool_and(ci_high < 0) AS below_zero_every_seed
FROM {{ source('backtracking_probe_margins') }}
GROUP BY model, layer, lag, target, baseline, metric
ORDER BY model, layer, lag, target, baseline, metric
