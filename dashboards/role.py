"""The dashboard's database role, rtfd_dashboard (schemas/postgres/0003_dashboard_role.sql).

The migration creates it NOLOGIN with its grants; `rtfd up` calls enable_login() with a password from the
environment (or generated into the state folder) and hands the dashboard the DSN from dashboard_dsn().
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROLE = "rtfd_dashboard"


def enable_login(admin_dsn: str, password: str) -> None:
    """Let rtfd_dashboard log in with this password (idempotent; the last password set wins)."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password))
        )


def dashboard_dsn(admin_dsn: str, password: str) -> str:
    """The admin DSN (postgresql://user:pw@host:port/db?...) with the dashboard role's credentials instead."""
    parts = urlsplit(admin_dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{ROLE}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
