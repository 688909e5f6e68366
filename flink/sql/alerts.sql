-- One alert per flagged transaction, every rule that fired merged (flink.rules.engine.evaluate), encoded
-- in the fraud_alert contract in the same Python step (raise_alerts, flink/udfs.py: null when no rule fired).
-- The record timestamp is the transaction's event time.
--
-- Two passes of the same rules. Pass 1 runs on every transaction without terminal context, in the JVM
-- (flink.stateful.card_anomalies), and keeps the anomalies (~1% of rows). compromised_terminal needs to know how many distinct anomalous cards paid at the
-- same terminal shortly before their anomaly, which only the anomalies themselves can say: keyed by that
-- terminal, flink.stateful.TerminalContext counts them on arrival (anomalies_in_context.suspect_cards).
-- Pass 2 re-evaluates just the anomalies with that count, so compromised_terminal is merged into the same
-- alert as the rules that fired in pass 1 and takes its params live like every rule.

INSERT INTO kafka_alerts
SELECT card_token, alert_value, TO_TIMESTAMP_LTZ(event_ms, 3)
FROM (
  SELECT card_token, event_ms,
    raise_alerts(transaction_id, amount_eur, device_id, hist_n, hist_sum_log, hist_sumsq_log, hist_span_s,
                 cnt_10m, sum_eur_10m, tiny_30m, distance_km, gap_s, device_uses, device_hist,
                 suspect_terminal, suspect_cards,
                 card_token, customer_id, bank_id, amount_minor, currency, event_ms) AS alert_value
  FROM anomalies_in_context
)
WHERE alert_value IS NOT NULL;
