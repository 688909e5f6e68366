-- Decode + validate once (a vectorized Python UDF). flink.job.materialize puts the result behind a
-- DataStream boundary so archive, DLQ and features share one decode operator.
CREATE TEMPORARY VIEW decoded AS
SELECT
  record_key, record_value, kafka_topic, kafka_partition, kafka_offset, kafka_ts,
  decode_transaction(record_value) AS tx
FROM kafka_transactions;
