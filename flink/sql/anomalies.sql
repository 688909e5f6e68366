-- Pass 1 of the rules (see alerts.sql): every transaction, no terminal context; the anomalies go on, with
-- the terminal where the anomalous card last paid in person within ${terminal_window_min} minutes before its
-- anomaly (the suspect terminal). `features` is the output of the per-card state (flink.stateful); the
-- anomalies go to the per-terminal state (flink.stateful.TerminalContext) in the columns it declares.
CREATE TEMPORARY VIEW anomalies AS
SELECT
  transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms, amount_eur, device_id,
  hist_n, hist_sum_log, hist_sumsq_log, hist_span_s, cnt_10m, sum_eur_10m, tiny_30m, distance_km, gap_s,
  device_uses, device_hist, prev_pos_terminal, prev_pos_ms,
  CASE WHEN prev_pos_terminal IS NOT NULL AND event_ms - prev_pos_ms <= ${terminal_window_min} * 60000
       THEN prev_pos_terminal END AS suspect_terminal,
  first_pass.severity AS first_severity
FROM (
  SELECT *,
    evaluate_rules(transaction_id, amount_eur, device_id, hist_n, hist_sum_log, hist_sumsq_log, hist_span_s,
                   cnt_10m, sum_eur_10m, tiny_30m, distance_km, gap_s, device_uses, device_hist,
                   CAST(NULL AS STRING), CAST(NULL AS BIGINT)) AS first_pass
  FROM features
)
WHERE first_pass.rules IS NOT NULL;
