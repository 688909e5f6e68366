-- Fraud alerts, one row per alert_id, written by the alert consumer (services/alerts) from `fraud-alerts`.
-- The consumer inserts with ON CONFLICT (alert_id) DO NOTHING: a redelivered alert never resets triage.
-- Analysts triage through `rtfd alerts resolve` (and later the dashboard): status, assignee, note.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id        text             PRIMARY KEY,
    transaction_id  text             NOT NULL,
    card_token      text             NOT NULL,
    customer_id     text             NOT NULL,
    bank_id         text             NOT NULL,
    rules           text[]           NOT NULL,
    score           double precision NOT NULL,
    severity        text             NOT NULL CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    reasons         text[]           NOT NULL,
    amount_minor    bigint           NOT NULL,
    currency        char(3)          NOT NULL,
    event_time      timestamptz      NOT NULL,
    detected_at     timestamptz      NOT NULL,
    stored_at       timestamptz      NOT NULL DEFAULT now(),
    kafka_partition integer,
    kafka_offset    bigint,
    -- triage
    status          text             NOT NULL DEFAULT 'open'
                                     CHECK (status IN ('open', 'confirmed_fraud', 'false_positive')),
    assignee        text,
    note            text,
    triaged_at      timestamptz,
    updated_at      timestamptz      NOT NULL DEFAULT now()
);

-- the dashboard's queries: newest first, filtered by bank, status, severity; a card's alert history
CREATE INDEX IF NOT EXISTS alerts_detected_at_idx ON alerts (detected_at DESC);
CREATE INDEX IF NOT EXISTS alerts_bank_detected_idx ON alerts (bank_id, detected_at DESC);
CREATE INDEX IF NOT EXISTS alerts_status_detected_idx ON alerts (status, detected_at DESC);
CREATE INDEX IF NOT EXISTS alerts_severity_detected_idx ON alerts (severity, detected_at DESC);
CREATE INDEX IF NOT EXISTS alerts_card_detected_idx ON alerts (card_token, detected_at DESC);
CREATE INDEX IF NOT EXISTS alerts_transaction_idx ON alerts (transaction_id);

-- Webhook notifications (an outbox), one row per new alert while a webhook is configured, written in the
-- same transaction as the alert. Delivered: delivered_at set. Pending: next_attempt_at set (the webhook
-- thread retries it then). Given up: neither (out of attempts). last_error says why the last attempt failed.
CREATE TABLE IF NOT EXISTS alert_notifications (
    alert_id        text        PRIMARY KEY REFERENCES alerts (alert_id) ON DELETE CASCADE,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    delivered_at    timestamptz,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS alert_notifications_due_idx ON alert_notifications (next_attempt_at)
    WHERE delivered_at IS NULL;
