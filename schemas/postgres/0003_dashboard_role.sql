-- The analyst dashboard's database role (dashboards/): it reads the archive and the alerts, and may change only
-- the triage columns of an alert. Created NOLOGIN; `rtfd up` gives it a password and LOGIN
-- (dashboards.role.enable_login), so a migration never carries a secret.
-- Idempotent, and harmless where the migrating user may not create roles (an external RTFD_PG_DSN): then it
-- only says so, and the dashboard keeps using RTFD_PG_DSN's user.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rtfd_dashboard') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            RAISE NOTICE 'role % may not create roles: rtfd_dashboard not created', current_user;
            RETURN;
        END IF;
        CREATE ROLE rtfd_dashboard NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO rtfd_dashboard', current_database());
    GRANT USAGE ON SCHEMA public TO rtfd_dashboard;
    GRANT SELECT ON transactions, alerts, alert_notifications TO rtfd_dashboard;
    GRANT UPDATE (status, assignee, note, triaged_at, updated_at) ON alerts TO rtfd_dashboard;
END
$$;

-- The dashboard's live queries look at the last seconds of the archive (processed_at) and read the alert feed
-- in stored_at order; without these they would scan both tables every second.
CREATE INDEX IF NOT EXISTS transactions_processed_at_idx ON transactions (processed_at);
CREATE INDEX IF NOT EXISTS alerts_stored_at_idx ON alerts (stored_at, alert_id);
