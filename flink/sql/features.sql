-- What rule pass 1 reads (flink.stateful.card_anomalies, keyed by card_token): one row per valid transaction,
-- in arrival order. The features themselves (history, velocity, card testing, travel, devices, last
-- card-present terminal) are computed on arrival from event-time state in Flink keyed state (the Java
-- CardFeatures, as flink/features.py computes them): no
-- watermark wait, nothing dropped as late (a delayed bank, a drained backlog or a replayed file alike).
-- Amounts in euros here (reference rates, flink/fx.py), so history in several currencies compares.
CREATE TEMPORARY VIEW card_input AS
SELECT transaction_id, card_token, customer_id, bank_id, amount_minor, currency, event_ms,
  ${amount_eur} AS amount_eur, device_id, lat, lon, channel, terminal_id
FROM transactions_valid;
