-- Every valid transaction into PostgreSQL (upsert on transaction_id). ingested_at: when the job read it.
-- transactions_to_archive: transactions_valid, partitioned by transaction_id into the sink's own task (job.py).
INSERT INTO pg_archive
SELECT
  transaction_id, CAST(event_time AS TIMESTAMP(3)), bank_id, customer_id, card_token, merchant_id, terminal_id, mcc, amount_minor,
  currency, channel, country, lat, lon, device_id, CAST(schema_version AS SMALLINT), kafka_partition,
  kafka_offset, CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3))
FROM transactions_to_archive;
