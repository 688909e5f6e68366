"""Least privilege in PostgreSQL (schemas/postgres/0005_component_roles.sql): each component role can do its
job and nothing else, and the stack's components really connect as their roles.

Privileges are checked when a statement starts, before any row is touched, so `... WHERE false` probes what a
role may do without changing data; the allowed writes are real rows, rolled back at the end of each test.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege

from rtfd.security.roles import COMPONENT_ROLES
from rtfd.stack import NativeStack

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def managed(stack):
    if not stack.managed_postgres:
        pytest.fail("these tests need the stack's own PostgreSQL (roles cannot be created with RTFD_PG_DSN)")


@contextmanager
def as_role(stack, component: str):
    """A connection as the component's role, inside a transaction that is always rolled back."""
    with psycopg.connect(stack.component_dsn(component), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == COMPONENT_ROLES[component]
        try:
            yield conn
        finally:
            conn.rollback()


def denied(conn: psycopg.Connection, statement: str, params: tuple = ()) -> bool:
    """True when the role lacks the privilege (the transaction is usable again afterwards)."""
    conn.execute("SAVEPOINT probe")
    try:
        conn.execute(statement, params)
    except InsufficientPrivilege:
        conn.execute("ROLLBACK TO SAVEPOINT probe")
        return True
    conn.execute("RELEASE SAVEPOINT probe")
    return False


NOW = datetime.now(UTC)
TX = ("INSERT INTO transactions (transaction_id, event_time, bank_id, customer_id, card_token, merchant_id, "
      "terminal_id, mcc, amount_minor, currency, channel, country, ingested_at) "
      "VALUES (%s, %s, 'bank-t', 'c1', 'tok', 'm1', 't1', '5411', 100, 'EUR', 'POS', 'DE', %s) "
      "ON CONFLICT (transaction_id) DO UPDATE SET amount_minor = excluded.amount_minor")
ALERT = ("INSERT INTO alerts (alert_id, transaction_id, card_token, customer_id, bank_id, rules, score, severity, "
         "reasons, amount_minor, currency, event_time, detected_at) "
         "VALUES (%s, 'tx', 'tok', 'c1', 'bank-t', '{velocity}', 0.9, 'HIGH', '{r}', 100, 'EUR', %s, %s)")


def test_flink_role_upserts_the_archive_and_nothing_else(stack):
    with as_role(stack, "flink") as conn:
        tx_id = f"roles-{uuid.uuid4().hex}"
        conn.execute(TX, (tx_id, NOW, NOW))
        conn.execute(TX, (tx_id, NOW, NOW))  # the JDBC sink's upsert of a replayed record
        assert conn.execute("SELECT count(*) FROM transactions WHERE transaction_id = %s", (tx_id,)).fetchone() == (1,)
        assert denied(conn, "DELETE FROM transactions WHERE false")
        assert denied(conn, "TRUNCATE transactions")
        assert denied(conn, "SELECT 1 FROM alerts LIMIT 1")
        assert denied(conn, "UPDATE alerts SET status = 'open' WHERE false")
        assert denied(conn, "CREATE TABLE public.flink_was_here (x int)")
        assert denied(conn, "SELECT 1 FROM registry.schemas LIMIT 1")


def test_alerts_role_stores_alerts_and_labels_but_not_the_archive(stack):
    with as_role(stack, "alerts") as conn:
        alert_id = f"roles-{uuid.uuid4().hex}"
        conn.execute(ALERT, (alert_id, NOW, NOW))
        conn.execute("INSERT INTO alert_notifications (alert_id, next_attempt_at) VALUES (%s, now())", (alert_id,))
        conn.execute("UPDATE alerts SET status = 'confirmed_fraud' WHERE alert_id = %s", (alert_id,))
        assert denied(conn, "DELETE FROM alerts WHERE false")
        assert denied(conn, "SELECT 1 FROM transactions LIMIT 1")
        assert denied(conn, TX, (alert_id, NOW, NOW))
        assert denied(conn, "CREATE TABLE public.alerts_was_here (x int)")
        if conn.execute("SELECT to_regclass('public.fraud_labels')").fetchone()[0] is not None:
            assert not denied(conn, "INSERT INTO fraud_labels SELECT * FROM fraud_labels WHERE false")
            assert denied(conn, "DELETE FROM fraud_labels WHERE false")


def test_lake_role_only_reads(stack):
    with as_role(stack, "lake") as conn:
        conn.execute("SELECT count(*) FROM transactions").fetchone()
        conn.execute("SELECT count(*) FROM alerts").fetchone()
        assert denied(conn, "INSERT INTO transactions SELECT * FROM transactions WHERE false")
        assert denied(conn, "UPDATE alerts SET status = 'open' WHERE false")
        assert denied(conn, "DELETE FROM transactions WHERE false")
        assert denied(conn, "SELECT 1 FROM alert_notifications LIMIT 1")  # webhook state is no lake data
        assert denied(conn, "CREATE TABLE public.lake_was_here (x int)")


def test_registry_role_owns_its_schema_only(stack):
    with as_role(stack, "registry") as conn:
        conn.execute("SELECT count(*) FROM registry.schemas").fetchone()
        assert not denied(conn, "INSERT INTO registry.config SELECT * FROM registry.config WHERE false")
        assert denied(conn, "SELECT 1 FROM transactions LIMIT 1")
        assert denied(conn, "SELECT 1 FROM alerts LIMIT 1")
        assert denied(conn, "CREATE TABLE public.registry_was_here (x int)")


def test_roles_cannot_log_in_without_their_password(stack):
    dsn = stack.component_dsn("flink").replace(stack.state_secret("flink_db_password"), "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=10).close()


def test_components_connect_as_their_roles(stack):
    native = NativeStack(stack)
    assert urlsplit(native.registry().env["RTFD_PG_DSN"]).username == "rtfd_registry"
    assert urlsplit(native.alert_consumer().env["RTFD_PG_DSN"]).username == "rtfd_alerts"
    assert urlsplit(native.labels_consumer().env["RTFD_PG_DSN"]).username == "rtfd_alerts"
    from flink.config import JobConfig

    assert JobConfig.from_settings(stack).jdbc_user == "rtfd_flink"
    # the running registry holds a pooled connection: as its role, not as the admin
    with psycopg.connect(stack.postgres_dsn) as conn:
        users = {r[0] for r in conn.execute("SELECT usename FROM pg_stat_activity WHERE usename IS NOT NULL")}
    assert "rtfd_registry" in users
