-- Undecodable or invalid records, byte for byte, with why and where from in the headers.
INSERT INTO kafka_dlq
SELECT
  record_key,
  record_value,
  MAP[
    'dlq.reason', ENCODE(error, 'UTF-8'),
    'dlq.source.topic', ENCODE(kafka_topic, 'UTF-8'),
    'dlq.source.partition', ENCODE(CAST(kafka_partition AS STRING), 'UTF-8'),
    'dlq.source.offset', ENCODE(CAST(kafka_offset AS STRING), 'UTF-8'),
    'dlq.source.timestamp', ENCODE(CAST(kafka_ts AS STRING), 'UTF-8')  -- UTC (table.local-time-zone)
  ],
  kafka_ts
FROM transactions_invalid;
