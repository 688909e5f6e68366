"""The components' PostgreSQL roles (schemas/postgres/0005_component_roles.sql): logins and DSNs.

The migration creates each role NOLOGIN with its grants; `rtfd up` calls enable_logins() with passwords
generated into the state folder (Settings.state_secret) and hands each component the DSN from role_dsn().
With an external RTFD_PG_DSN the roles may not exist and every component uses that DSN's user instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

COMPONENT_ROLES = {
    "flink": "rtfd_flink",  # the Flink job's archive sink
    "alerts": "rtfd_alerts",  # the alert and labels consumers
    "lake": "rtfd_lake",  # Dagster, read-only
    "registry": "rtfd_registry",  # the schema registry's own schema
}


def role_of(component: str) -> str:
    try:
        return COMPONENT_ROLES[component]
    except KeyError:
        raise ValueError(f"no database role for component {component!r}; known: {', '.join(COMPONENT_ROLES)}") from None


def role_dsn(admin_dsn: str, component: str, password: str) -> str:
    """The admin DSN (postgresql://user:pw@host:port/db?...) with the component role's credentials instead."""
    parts = urlsplit(admin_dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{role_of(component)}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def enable_logins(admin_dsn: str, passwords: Mapping[str, str]) -> None:
    """Let each component's role log in with its password (idempotent; the last password set wins)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        for component, password in passwords.items():
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(role_of(component)), sql.Literal(password)))
