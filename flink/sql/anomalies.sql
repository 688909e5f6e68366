-- Pass 1 of the rules (see alerts.sql): every transaction, no terminal context; the anomalies go on.
-- flink.job.materialize puts them behind a DataStream boundary, so pass 1 runs once per transaction even
-- though alerts.sql reads the anomalies twice.
-- Only the columns pass 2 and the alert need: a DataStream boundary keeps every column it is given, and
-- with them the whole feature chain would carry (and checkpoint) columns nobody reads.
CREATE TEMPORARY VIEW anomalies AS
SELECT
  transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms, event_time, rowtime,
  amount_eur, device_id, hist_n, hist_sum_log, hist_sumsq_log, hist_span_s, cnt_10m, sum_eur_10m, tiny_30m,
  distance_km, gap_s, device_uses, device_hist, prev_pos_terminal, prev_pos_ms
FROM (
  SELECT *,
    evaluate_rules(transaction_id, amount_eur, device_id, hist_n, hist_sum_log, hist_sumsq_log, hist_span_s,
                   cnt_10m, sum_eur_10m, tiny_30m, distance_km, gap_s, device_uses, device_hist,
                   CAST(NULL AS STRING), CAST(NULL AS BIGINT)) AS first_pass
  FROM features
)
WHERE first_pass.rules IS NOT NULL;
