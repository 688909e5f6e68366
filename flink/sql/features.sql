-- What the per-card feature state (flink.stateful.CardFeatures, keyed by card_token) reads: one row per valid
-- transaction, in arrival order. The features themselves (history, velocity, card testing, travel, devices,
-- last card-present terminal) are computed on arrival from event-time state in flink/features.py: no
-- watermark wait, nothing dropped as late (a delayed bank, a drained backlog or a replayed file alike).
-- Amounts in euros here (reference rates, flink/fx.py), so history in several currencies compares.
CREATE TEMPORARY VIEW card_input AS
SELECT transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms,
  ${amount_eur} AS amount_eur, device_id, lat, lon, channel, terminal_id
FROM transactions_valid;

-- card_input_by_card: the same rows hash-partitioned by card_token (flink.job.keyed_state), so every row of a
-- card reaches the same card_features worker, which keeps that card's history (flink/features.py CardCache).
CREATE TEMPORARY VIEW features AS
SELECT transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms, amount_eur, device_id,
  f.hist_n AS hist_n, f.hist_sum_log AS hist_sum_log, f.hist_sumsq_log AS hist_sumsq_log,
  f.hist_span_s AS hist_span_s, f.cnt_10m AS cnt_10m, f.sum_eur_10m AS sum_eur_10m, f.tiny_30m AS tiny_30m,
  f.distance_km AS distance_km, f.gap_s AS gap_s, f.device_uses AS device_uses, f.device_hist AS device_hist,
  f.prev_pos_terminal AS prev_pos_terminal, f.prev_pos_ms AS prev_pos_ms
FROM (
  SELECT *, card_features(transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms,
                          amount_eur, device_id, lat, lon, channel, terminal_id) AS f
  FROM card_input_by_card
);
