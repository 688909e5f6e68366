-- Ground truth: one fraud label per transaction, written by the labels consumer (services/labels) from the
-- `fraud-labels` topic (contract schemas/avro/fraud_label-v1.avsc). Read by the dashboard's rule precision and
-- recall and by the Dagster marts (rule precision/recall per rule per day): keep the name and columns stable.
-- A label for a transaction already labelled replaces it only when its labelled_at is not older
-- (ON CONFLICT ... WHERE excluded.labelled_at >= fraud_labels.labelled_at): a late chargeback overrides the
-- simulator's guess, a redelivered or stale label changes nothing.
CREATE TABLE IF NOT EXISTS fraud_labels (
    transaction_id text        PRIMARY KEY,
    is_fraud       boolean     NOT NULL,
    scenario       text,
    labelled_at    timestamptz NOT NULL,
    source         text        NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()  -- when the consumer last stored (or replaced) it
);

-- Joins run on transaction_id (the primary key); marts and "labels of the last N days" scan by labelled_at.
CREATE INDEX IF NOT EXISTS fraud_labels_labelled_at_idx ON fraud_labels (labelled_at);
-- recall's denominator: the fraud-labelled transactions of a period, without reading the legitimate ones
CREATE INDEX IF NOT EXISTS fraud_labels_fraud_idx ON fraud_labels (transaction_id) WHERE is_fraud;

-- The dashboard reads labels; guarded like 0003_dashboard_role.sql: with an external RTFD_PG_DSN whose user
-- may not create roles the role may not exist, and then there is nothing to grant.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rtfd_dashboard') THEN
        GRANT SELECT ON fraud_labels TO rtfd_dashboard;
    ELSE
        RAISE NOTICE 'role rtfd_dashboard does not exist: SELECT on fraud_labels not granted';
    END IF;
END
$$;
