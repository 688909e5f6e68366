-- Connector tables. The placeholders are filled from flink.config.JobConfig (Settings); no hosts are written here.
-- kafka_security (before each bootstrap line): the flink principal's SASL/SCRAM options, empty when plaintext.

-- Every record of the transactions topic as raw bytes. The producers set the Kafka record timestamp to the
-- transaction's event_time, so the watermark can come from the timestamp metadata before decoding.
CREATE TEMPORARY TABLE kafka_transactions (
  record_key      BYTES,
  record_value    BYTES,
  kafka_topic     STRING           METADATA FROM 'topic' VIRTUAL,
  kafka_partition INT              METADATA FROM 'partition' VIRTUAL,
  kafka_offset    BIGINT           METADATA FROM 'offset' VIRTUAL,
  kafka_ts        TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  WATERMARK FOR kafka_ts AS kafka_ts - INTERVAL '${watermark_delay}' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '${transactions_topic}',
  ${kafka_security}'properties.bootstrap.servers' = '${bootstrap}',
  'properties.group.id' = '${group_id}',
  'properties.auto.offset.reset' = 'earliest',
  'scan.startup.mode' = 'group-offsets',
  'scan.topic-partition-discovery.interval' = '60 s',
  'key.format' = 'raw',
  'key.fields' = 'record_key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);

-- The compacted rules topic as a changelog: key = rule id, value = its JSON override; a tombstone (the rule back
-- to its default) arrives as a DELETE. Broadcast to rule pass 1 (io.rtfd.flink.CardAnomalies), read from the
-- beginning on every start: the compacted topic is the current rule set. No consumer group (nothing to
-- commit); the client ids get a fixed prefix, else Flink makes one of a random 64-bit number, which the log
-- scan of issue #6 may read as a card number.
CREATE TEMPORARY TABLE kafka_rules (
  rule_id STRING,
  config  STRING,
  PRIMARY KEY (rule_id) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = '${rules_topic}',
  ${kafka_security}'properties.bootstrap.servers' = '${bootstrap}',
  'properties.client.id.prefix' = '${group_id}-rules',
  'key.format' = 'raw',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);

-- Dead letters: the original key and bytes, the reason and the origin in headers.
CREATE TEMPORARY TABLE kafka_dlq (
  record_key   BYTES,
  record_value BYTES,
  headers      MAP<STRING, BYTES>  METADATA,
  kafka_ts     TIMESTAMP_LTZ(3)    METADATA FROM 'timestamp'
) WITH (
  'connector' = 'kafka',
  'topic' = '${dlq_topic}',
  ${kafka_security}'properties.bootstrap.servers' = '${bootstrap}',
  'sink.delivery-guarantee' = 'at-least-once',
  'key.format' = 'raw',
  'key.fields' = 'record_key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);

-- The archive: idempotent upsert on the primary key, so a replay after a failure writes nothing twice.
-- processed_at is left to the column default (now() at insert). The JDBC connector has no TIMESTAMP_LTZ:
-- timestamps travel as UTC wall-clock TIMESTAMP(3) (table.local-time-zone = UTC), which the PostgreSQL
-- driver reads in the JVM's zone, so TaskManagers must run in UTC (-Duser.timezone=UTC); see docs/flink.md.
CREATE TEMPORARY TABLE pg_archive (
  transaction_id  STRING,
  event_time      TIMESTAMP(3),
  bank_id         STRING,
  customer_id     STRING,
  card_token      STRING,
  merchant_id     STRING,
  terminal_id     STRING,
  mcc             STRING,
  amount_minor    BIGINT,
  currency        STRING,
  channel         STRING,
  country         STRING,
  lat             DOUBLE,
  lon             DOUBLE,
  device_id       STRING,
  schema_version  SMALLINT,
  kafka_partition INT,
  kafka_offset    BIGINT,
  ingested_at     TIMESTAMP(3),
  PRIMARY KEY (transaction_id) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'url' = '${jdbc_url}',
  'table-name' = '${archive_table}',
  'username' = '${jdbc_user}',
  'password' = '${jdbc_password}',
  'sink.buffer-flush.max-rows' = '2000',
  'sink.buffer-flush.interval' = '200ms',
  -- retry i waits i seconds (JdbcOutputFormat.flush) and reconnects: 10 retries ride out ~45 s of a
  -- PostgreSQL restart instead of failing the task (docs/reliability.md, the postgres scenario)
  'sink.max-retries' = '10'
);

-- Alerts in exactly the registered contract (schemas/avro/fraud_alert-v1.avsc). The value bytes are
-- encoded by the raise_alerts UDF (flink/alerts.py explains why not the avro-confluent format); key = card.
CREATE TEMPORARY TABLE kafka_alerts (
  card_token  STRING,
  alert_value BYTES,
  kafka_ts    TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'
) WITH (
  'connector' = 'kafka',
  'topic' = '${alerts_topic}',
  ${kafka_security}'properties.bootstrap.servers' = '${bootstrap}',
  'sink.delivery-guarantee' = 'at-least-once',
  -- send each alert at once: Kafka 4 clients wait 5 ms by default (linger.ms) to fill a batch, and alerts come
  -- a few a second, so that wait would only add to every alert's latency
  'properties.linger.ms' = '0',
  'key.format' = 'raw',
  'key.fields' = 'card_token',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);
