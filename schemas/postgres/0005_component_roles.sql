-- Least privilege: one database role per component, each allowed exactly what its job needs (issue #6).
--   rtfd_flink     the Flink job's JDBC archive sink: upserts transactions (INSERT ... ON CONFLICT DO UPDATE
--                  needs SELECT as well), nothing else
--   rtfd_alerts    the alert consumer (alerts, alert_notifications) and the labels consumer (fraud_labels):
--                  read, insert, update; never delete, never the archive
--   rtfd_lake      Dagster: reads the archive, the alerts and the labels
--   rtfd_registry  the schema registry: owns schema `registry` (its tables, created at its start), nothing else
-- (rtfd_dashboard is 0003's.) Created NOLOGIN like rtfd_dashboard: `rtfd up` gives each a generated password
-- and LOGIN (rtfd.security.roles.enable_logins), so a migration never carries a secret.
-- Idempotent, and harmless where the migrating user may not create roles (an external RTFD_PG_DSN): then it
-- only says so, and every component keeps using RTFD_PG_DSN's user.
DO $$
DECLARE
    component_role text;
    registry_table text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
        RAISE NOTICE 'role % may not create roles: component roles not created', current_user;
        RETURN;
    END IF;
    FOREACH component_role IN ARRAY ARRAY['rtfd_flink', 'rtfd_alerts', 'rtfd_lake', 'rtfd_registry'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = component_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', component_role);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), component_role);
    END LOOP;

    -- before PostgreSQL 15 every role may create tables in schema public; no component should
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    GRANT USAGE ON SCHEMA public TO rtfd_flink, rtfd_alerts, rtfd_lake;
    GRANT SELECT, INSERT, UPDATE ON transactions TO rtfd_flink;
    GRANT SELECT, INSERT, UPDATE ON alerts, alert_notifications TO rtfd_alerts;
    GRANT SELECT ON transactions, alerts TO rtfd_lake;
    -- fraud_labels comes with 0004; guarded so this migration also applies where 0004 is not there yet
    IF to_regclass('public.fraud_labels') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON fraud_labels TO rtfd_alerts;
        GRANT SELECT ON fraud_labels TO rtfd_lake;
    ELSE
        RAISE NOTICE 'table fraud_labels does not exist: its grants to rtfd_alerts and rtfd_lake skipped';
    END IF;

    -- The registry creates its tables itself at start (services/registry/store.py), inside a schema it owns.
    -- A registry that ran as the admin user before this migration left admin-owned tables: hand them over.
    -- A CREATEROLE (not superuser) migrator may only give objects to roles it belongs to.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
        EXECUTE format('GRANT rtfd_registry TO %I', current_user);
    END IF;
    CREATE SCHEMA IF NOT EXISTS registry AUTHORIZATION rtfd_registry;
    ALTER SCHEMA registry OWNER TO rtfd_registry;
    FOR registry_table IN SELECT tablename FROM pg_tables WHERE schemaname = 'registry' LOOP
        EXECUTE format('ALTER TABLE registry.%I OWNER TO rtfd_registry', registry_table);
    END LOOP;
END
$$;
