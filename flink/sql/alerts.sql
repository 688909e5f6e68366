-- One alert per flagged transaction, every rule that fired merged (flink.rules.engine.evaluate), encoded
-- in the fraud_alert contract by encode_alert. The record timestamp is the transaction's event time.
INSERT INTO kafka_alerts
SELECT
  card_token,
  encode_alert(v.alert_id, transaction_id, card_token, customer_id, bank_id, v.rules, v.score, v.severity,
               v.reasons, amount_minor, currency, event_ms),
  event_time
FROM (
  SELECT *,
    evaluate_rules(transaction_id, amount_eur, device_id, hist_n, hist_sum_log, hist_sumsq_log, hist_span_s,
                   cnt_10m, sum_eur_10m, tiny_30m, distance_km, gap_s, device_uses, device_hist,
                   suspect_terminal, suspect_cards) AS v
  FROM features
)
WHERE v.rules IS NOT NULL;
