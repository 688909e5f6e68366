-- One alert per flagged transaction, every rule that fired merged (flink.rules.engine.evaluate), encoded
-- in the fraud_alert contract by encode_alert. The record timestamp is the transaction's event time.
--
-- Two passes of the same rules. Pass 1 runs on every transaction without terminal context and keeps the
-- anomalies (~1% of rows). compromised_terminal needs to know how many distinct anomalous cards paid at the
-- same terminal shortly before their anomaly, which only the anomalies themselves can say: per terminal an
-- OVER window counts them. Pass 2 re-evaluates just the anomalies with that count, so compromised_terminal is
-- merged into the same alert as the rules that fired in pass 1 and takes its params live like every rule.

-- the terminal where the anomalous card last paid in person within ${terminal_window_min} minutes before
-- its anomaly, and how many distinct anomalous cards did the same over the last ${terminal_span_min} minutes
CREATE TEMPORARY VIEW anomalies_by_terminal AS
SELECT *,
  COUNT(DISTINCT card_token) OVER (
    PARTITION BY suspect_terminal ORDER BY rowtime
    RANGE BETWEEN INTERVAL '${terminal_span_min}' MINUTE(3) PRECEDING AND CURRENT ROW) AS suspect_cards
FROM (
  SELECT *, prev_pos_terminal AS suspect_terminal
  FROM anomalies_once
  WHERE prev_pos_terminal IS NOT NULL AND event_ms - prev_pos_ms <= ${terminal_window_min} * 60000
);

CREATE TEMPORARY VIEW anomalies_in_context AS
SELECT * FROM anomalies_by_terminal
UNION ALL
SELECT *, CAST(NULL AS STRING) AS suspect_terminal, CAST(NULL AS BIGINT) AS suspect_cards
FROM anomalies_once
WHERE prev_pos_terminal IS NULL OR event_ms - prev_pos_ms > ${terminal_window_min} * 60000;

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
  FROM anomalies_in_context
)
WHERE v.rules IS NOT NULL;
