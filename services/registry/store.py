"""Durable registry state in PostgreSQL schema `registry`: global schema ids, subject versions, compatibility.

Every write runs in one transaction behind one advisory lock, so concurrent registrations (from this or
another registry process on the same database) allocate ids and versions without races. Registry writes are
rare, so a single lock costs nothing noticeable. Schemas are never deleted: a message already in Kafka may
still carry a hard-deleted subject's id, and re-registering the same text gets the same id back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import avro.schema
import psycopg
from psycopg_pool import ConnectionPool

from services.registry import compat, errors

log = logging.getLogger(__name__)

WRITE_LOCK = 0x7274_6664_7265_6769  # "rtfdregi": serialises DDL and every write

# The schema itself is created apart (see create_tables): CREATE SCHEMA needs the database's CREATE right even
# when the schema exists, which the registry's own role (0005_component_roles.sql, owner of `registry`) lacks.
DDL = """
CREATE TABLE IF NOT EXISTS registry.schemas (
    id          serial PRIMARY KEY,
    fingerprint text NOT NULL UNIQUE,
    canonical   text NOT NULL,
    schema_type text NOT NULL DEFAULT 'AVRO',
    schema      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry.subject_versions (
    subject    text NOT NULL,
    version    integer NOT NULL,
    schema_id  integer NOT NULL REFERENCES registry.schemas (id),
    deleted    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS subject_versions_schema_id ON registry.subject_versions (schema_id);
CREATE TABLE IF NOT EXISTS registry.config (
    subject       text,
    compatibility text NOT NULL
);
-- NULL subject = the global level; routes never yield an empty subject, so '' cannot collide
CREATE UNIQUE INDEX IF NOT EXISTS config_subject ON registry.config ((coalesce(subject, '')));
"""

_VERSIONS = """
SELECT v.subject, v.version, v.schema_id, s.schema, v.deleted
FROM registry.subject_versions v JOIN registry.schemas s ON s.id = v.schema_id
WHERE v.subject = %s
"""


@dataclass(frozen=True)
class Version:
    subject: str
    version: int
    id: int
    schema: str
    deleted: bool

    def body(self) -> dict:
        return {"subject": self.subject, "version": self.version, "id": self.id, "schema": self.schema}


class Pool:
    """Autocommit connections from psycopg_pool; each request gets one inside a transaction."""

    def __init__(self, dsn: str, size: int = 8) -> None:
        # check_connection: an idle connection dies silently when PostgreSQL restarts; probe before use
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=size, open=True, check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": 10},
        )  # fmt: skip

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        self._pool.close()


class Store:
    def __init__(self, dsn: str) -> None:
        self.pool = Pool(dsn)

    def create_tables(self, wait: float = 30.0) -> None:
        """Create the tables if missing, waiting up to `wait` seconds for PostgreSQL to accept connections."""
        deadline, waited = time.monotonic() + wait, False
        while True:
            try:
                # The lock makes concurrent first starts safe: CREATE ... IF NOT EXISTS alone can still race.
                with self.pool.transaction() as conn:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    if conn.execute("SELECT to_regnamespace('registry')").fetchone()[0] is None:
                        conn.execute("CREATE SCHEMA registry")
                    conn.execute(DDL)
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                if not waited:  # once, not every second
                    log.warning("PostgreSQL not reachable yet, waiting up to %.0fs: %s", wait, str(exc).strip())
                waited = True
                time.sleep(1)

    def close(self) -> None:
        self.pool.close()

    # --- reads ------------------------------------------------------------------------------------------
    def subjects(self, deleted: bool = False, deleted_only: bool = False, prefix: str = "") -> list[str]:
        having = "bool_and(deleted)" if deleted_only else "true" if deleted else "NOT bool_and(deleted)"
        with self.pool.transaction() as conn:
            rows = conn.execute(
                f"SELECT subject FROM registry.subject_versions WHERE starts_with(subject, %s) "
                f"GROUP BY subject HAVING {having} ORDER BY subject",
                (prefix,),
            ).fetchall()
        return [r[0] for r in rows]

    def versions(self, subject: str, deleted: bool = False) -> list[Version]:
        """The subject's versions, oldest first; soft-deleted ones only if `deleted`."""
        with self.pool.transaction() as conn:
            return _versions(conn, subject, deleted)

    def schema(self, schema_id: int) -> str | None:
        with self.pool.transaction() as conn:
            row = conn.execute("SELECT schema FROM registry.schemas WHERE id = %s", (schema_id,)).fetchone()
        return row[0] if row else None

    def usages(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """(subject, version) pairs that use the id; raises 40403 if the id was never registered."""
        with self.pool.transaction() as conn:
            if conn.execute("SELECT 1 FROM registry.schemas WHERE id = %s", (schema_id,)).fetchone() is None:
                raise errors.schema_not_found(f"Schema {schema_id} not found")
            rows = conn.execute(
                "SELECT subject, version FROM registry.subject_versions "
                "WHERE schema_id = %s AND (%s OR NOT deleted) ORDER BY subject, version",
                (schema_id, deleted),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def lookup(self, subject: str, text: str, deleted: bool = False) -> Version:
        versions = self.versions(subject, deleted)
        if not versions:
            raise errors.subject_not_found(subject)
        wanted = compat.fingerprint(text)
        with self.pool.transaction() as conn:
            row = conn.execute("SELECT id FROM registry.schemas WHERE fingerprint = %s", (wanted,)).fetchone()
        # live versions first, then the newest: what a client means by "is this schema registered"
        matches = sorted((v for v in versions if row and v.id == row[0]), key=lambda v: (not v.deleted, v.version))
        if not matches:
            raise errors.schema_not_found()
        return matches[-1]

    def compatibility(self, subject: str | None) -> str | None:
        """The level configured for a subject (or the global one for None); None if not configured."""
        with self.pool.transaction() as conn:
            return _compatibility(conn, subject)

    # --- writes -----------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection]:
        with self.pool.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield conn

    def register(self, subject: str, text: str, parsed: avro.schema.Schema) -> int:
        """The global id of `text` under `subject`, registering a new version if it is not live there yet."""
        fp = compat.fingerprint(text)
        with self._write() as conn:
            live = _versions(conn, subject, deleted=False)
            row = conn.execute("SELECT id FROM registry.schemas WHERE fingerprint = %s", (fp,)).fetchone()
            schema_id = row[0] if row else None
            if any(v.id == schema_id for v in live):
                return schema_id
            level = _compatibility(conn, subject) or _compatibility(conn, None) or compat.DEFAULT_LEVEL
            previous = [(v.version, compat.parse(v.schema)) for v in live]
            problems = compat.incompatibilities(level, parsed, previous)
            if problems:
                raise errors.incompatible(subject, problems)
            if schema_id is None:
                schema_id = conn.execute(
                    "INSERT INTO registry.schemas (fingerprint, canonical, schema) VALUES (%s, %s, %s) RETURNING id",
                    (fp, compat.canonical(text), text),
                ).fetchone()[0]
            conn.execute(
                "INSERT INTO registry.subject_versions (subject, version, schema_id) "
                "SELECT %s, coalesce(max(version), 0) + 1, %s "
                "FROM registry.subject_versions WHERE subject = %s",
                (subject, schema_id, subject),
            )
            return schema_id

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        with self._write() as conn:
            versions = _versions(conn, subject, deleted=True)
            if not versions:
                raise errors.subject_not_found(subject)
            live = [v.version for v in versions if not v.deleted]
            if permanent:
                if live:
                    raise errors.subject_not_soft_deleted(subject)
                conn.execute("DELETE FROM registry.subject_versions WHERE subject = %s", (subject,))
                return [v.version for v in versions]
            if not live:
                raise errors.subject_soft_deleted(subject)
            conn.execute("UPDATE registry.subject_versions SET deleted = true WHERE subject = %s", (subject,))
            # as Confluent does: a deleted subject loses its own level, a re-created one starts from global
            conn.execute("DELETE FROM registry.config WHERE subject = %s", (subject,))
            return live

    def delete_version(self, subject: str, version: int | None, permanent: bool) -> int:
        """Delete one version (None = the latest: live for a soft delete, any for a permanent one)."""
        with self._write() as conn:
            versions = _versions(conn, subject, deleted=True)
            if not versions:
                raise errors.subject_not_found(subject)
            if version is None:
                candidates = versions if permanent else [v for v in versions if not v.deleted]
                if not candidates:
                    raise errors.version_not_found(subject, "latest")
                version = candidates[-1].version
            target = next((v for v in versions if v.version == version), None)
            if target is None:
                raise errors.version_not_found(subject, version)
            if permanent and not target.deleted:
                raise errors.version_not_soft_deleted(subject, version)
            if not permanent and target.deleted:
                raise errors.version_soft_deleted(subject, version)
            if permanent:
                conn.execute(
                    "DELETE FROM registry.subject_versions WHERE subject = %s AND version = %s",
                    (subject, version),
                )
            else:
                conn.execute(
                    "UPDATE registry.subject_versions SET deleted = true WHERE subject = %s AND version = %s",
                    (subject, version),
                )
            return version

    def set_compatibility(self, subject: str | None, level: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO registry.config (subject, compatibility) VALUES (%s, %s) "
                "ON CONFLICT ((coalesce(subject, ''))) DO UPDATE SET compatibility = excluded.compatibility",
                (subject, level),
            )

    def delete_compatibility(self, subject: str | None) -> str | None:
        """Remove a level; returns the one removed (None if there was none)."""
        with self._write() as conn:
            row = conn.execute(
                "DELETE FROM registry.config WHERE subject IS NOT DISTINCT FROM %s RETURNING compatibility",
                (subject,),
            ).fetchone()
        return row[0] if row else None


def _versions(conn: psycopg.Connection, subject: str, deleted: bool) -> list[Version]:
    rows = conn.execute(_VERSIONS + " AND (%s OR NOT v.deleted) ORDER BY v.version", (subject, deleted))
    return [Version(*r) for r in rows.fetchall()]


def _compatibility(conn: psycopg.Connection, subject: str | None) -> str | None:
    row = conn.execute(
        "SELECT compatibility FROM registry.config WHERE subject IS NOT DISTINCT FROM %s", (subject,)
    ).fetchone()
    return row[0] if row else None
