-- Alert latency per UTC detection date, bank and severity: seconds from the transaction's event time to detection (p50/p95/p99/max) and from detection to storage (p50/p99).
-- (epoch of the interval, not a difference of epochs: exact to the microsecond in both engines)
WITH l AS (
    SELECT (detected_at AT TIME ZONE 'UTC')::date AS day, bank_id, severity,
           extract(epoch FROM (detected_at - event_time))::float8 AS detect_s,
           extract(epoch FROM (stored_at - detected_at))::float8 AS store_s
    FROM alerts
)
SELECT day,
       bank_id,
       severity,
       count(*) AS alerts,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY detect_s) AS detect_p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY detect_s) AS detect_p95_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY detect_s) AS detect_p99_s,
       max(detect_s) AS detect_max_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY store_s) AS store_p50_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY store_s) AS store_p99_s
FROM l
GROUP BY day, bank_id, severity
ORDER BY day, bank_id, severity
