-- Valid rows onward (archive, features); the rest to the dead-letter topic. `rowtime` = Kafka timestamp.
CREATE TEMPORARY VIEW transactions_valid AS
SELECT
  tx.transaction_id AS transaction_id,
  TO_TIMESTAMP_LTZ(tx.event_time_ms, 3) AS event_time,
  tx.event_time_ms AS event_ms,
  tx.bank_id AS bank_id,
  tx.customer_id AS customer_id,
  tx.card_token AS card_token,
  tx.merchant_id AS merchant_id,
  tx.terminal_id AS terminal_id,
  tx.mcc AS mcc,
  tx.amount_minor AS amount_minor,
  tx.currency AS currency,
  tx.channel AS channel,
  tx.country AS country,
  tx.lat AS lat,
  tx.lon AS lon,
  tx.device_id AS device_id,
  tx.schema_version AS schema_version,
  kafka_partition,
  kafka_offset,
  kafka_ts,
  rowtime
FROM decoded_once
WHERE tx.error IS NULL;

CREATE TEMPORARY VIEW transactions_invalid AS
SELECT record_key, record_value, tx.error AS error, kafka_topic, kafka_partition, kafka_offset, kafka_ts
FROM decoded_once
WHERE tx.error IS NOT NULL;
