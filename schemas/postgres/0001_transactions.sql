-- The archive: every valid transaction, exactly once (primary key on transaction_id).
-- Written by the Flink job (upsert on transaction_id); read by Dagster, the dashboard and analysts.
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id  text        PRIMARY KEY,
    event_time      timestamptz NOT NULL,
    bank_id         text        NOT NULL,
    customer_id     text        NOT NULL,
    card_token      text        NOT NULL,
    merchant_id     text        NOT NULL,
    terminal_id     text        NOT NULL,
    mcc             text        NOT NULL,
    amount_minor    bigint      NOT NULL CHECK (amount_minor > 0),
    currency        char(3)     NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('POS', 'ECOM', 'ATM', 'MOBILE')),
    country         char(2)     NOT NULL,
    lat             double precision CHECK (lat BETWEEN -90 AND 90),
    lon             double precision CHECK (lon BETWEEN -180 AND 180),
    device_id       text,
    schema_version  smallint    NOT NULL DEFAULT 1,
    kafka_partition integer,
    kafka_offset    bigint,
    ingested_at     timestamptz NOT NULL,   -- when the Flink job read it from Kafka
    processed_at    timestamptz NOT NULL DEFAULT now()  -- when the archive row was written
);

CREATE INDEX IF NOT EXISTS transactions_event_time_idx ON transactions (event_time);
CREATE INDEX IF NOT EXISTS transactions_card_time_idx ON transactions (card_token, event_time DESC);
CREATE INDEX IF NOT EXISTS transactions_bank_time_idx ON transactions (bank_id, event_time);
