-- One alert per flagged transaction, every rule that fired merged (flink.rules.engine.evaluate), encoded
-- in the fraud_alert contract by encode_alert. The record timestamp is the transaction's event time.
--
-- Two passes of the same rules. Pass 1 runs on every transaction without terminal context and keeps the
-- anomalies (~1% of rows). compromised_terminal needs to know how many distinct anomalous cards paid at the
-- same terminal shortly before their anomaly, which only the anomalies themselves can say: keyed by that
-- terminal, flink.stateful.TerminalContext counts them on arrival (anomalies_in_context.suspect_cards).
-- Pass 2 re-evaluates just the anomalies with that count, so compromised_terminal is merged into the same
-- alert as the rules that fired in pass 1 and takes its params live like every rule.

INSERT INTO kafka_alerts
SELECT
  card_token,
  encode_alert(v.alert_id, transaction_id, card_token, customer_id, bank_id, v.rules, v.score, v.severity,
               v.reasons, amount_minor, currency, event_ms),
  TO_TIMESTAMP_LTZ(event_ms, 3)
FROM (
  SELECT *,
    evaluate_rules(transaction_id, amount_eur, device_id, hist_n, hist_sum_log, hist_sumsq_log, hist_span_s,
                   cnt_10m, sum_eur_10m, tiny_30m, distance_km, gap_s, device_uses, device_hist,
                   suspect_terminal, suspect_cards) AS v
  FROM anomalies_in_context
)
WHERE v.rules IS NOT NULL;
