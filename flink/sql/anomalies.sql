-- card_input_by_card: card_input hash-partitioned by card_token (flink.job.keyed_state), so every row of a
-- card reaches the same card_anomalies worker, which keeps that card's history (flink/features.py CardCache).
-- card_anomalies computes the transaction's features and runs rule pass 1 over them (see alerts.sql) in the
-- same Python step: every transaction, no terminal context. The anomalies go on with their features, the
-- terminal where the card last paid in person within ${terminal_window_min} minutes before (the suspect
-- terminal) and their pass-1 severity, to the per-terminal state (flink.stateful.TerminalContext).
CREATE TEMPORARY VIEW anomalies AS
SELECT transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms, amount_eur, device_id,
  a.hist_n AS hist_n, a.hist_sum_log AS hist_sum_log, a.hist_sumsq_log AS hist_sumsq_log,
  a.hist_span_s AS hist_span_s, a.cnt_10m AS cnt_10m, a.sum_eur_10m AS sum_eur_10m, a.tiny_30m AS tiny_30m,
  a.distance_km AS distance_km, a.gap_s AS gap_s, a.device_uses AS device_uses, a.device_hist AS device_hist,
  a.prev_pos_terminal AS prev_pos_terminal, a.prev_pos_ms AS prev_pos_ms, a.suspect_terminal AS suspect_terminal,
  a.first_severity AS first_severity,
  -- the key of the per-terminal state: anomalies without a suspect terminal need none (their card)
  COALESCE(CONCAT('terminal:', a.suspect_terminal), CONCAT('card:', card_token)) AS terminal_key
FROM (
  SELECT *, card_anomalies(transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms,
                           amount_eur, device_id, lat, lon, channel, terminal_id) AS a
  FROM card_input_by_card
)
WHERE a.first_severity IS NOT NULL;
