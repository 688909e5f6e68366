"""Every query on the `alerts` and `alert_notifications` tables (schemas/postgres/0002_alerts.sql).

Used by the consumer (insert), `rtfd alerts` (list, export, resolve), the webhook (delivery bookkeeping) and
later the dashboard. Functions take an open psycopg connection; writes run in their own transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from services.alerts.alert import STATUSES, Alert

# `rtfd alerts resolve --as X`: what the analyst decided -> the stored status
RESOLUTIONS = {"fraud": "confirmed_fraud", "legit": "false_positive"}

_INSERT_COLUMNS = (
    "alert_id", "transaction_id", "card_token", "customer_id", "bank_id", "rules", "score", "severity", "reasons",
    "amount_minor", "currency", "event_time", "detected_at", "kafka_partition", "kafka_offset",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO alerts ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))}) "  # noqa: S608
    "ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id"
)
_NOTIFY = (
    "INSERT INTO alert_notifications (alert_id, next_attempt_at) "
    "SELECT unnest(%s::text[]), now() + make_interval(secs => %s::float8) ON CONFLICT (alert_id) DO NOTHING"
)

# what list/export show, in this order
COLUMNS = (
    "alert_id", "transaction_id", "bank_id", "customer_id", "card_token", "rules", "score", "severity",
    "reasons", "amount_minor", "currency", "event_time", "detected_at", "stored_at", "status", "assignee",
    "note", "triaged_at", "updated_at", "kafka_partition", "kafka_offset",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"  # noqa: S608


class UnknownAlertError(LookupError):
    def __init__(self, alert_id: str):
        super().__init__(f"no alert with id {alert_id!r}")
        self.alert_id = alert_id


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """A connection in autocommit mode: each store function is then exactly one transaction."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5, **kwargs)


# --- writes by the consumer ---------------------------------------------------------------------------------
def insert_new_alerts(
    conn: psycopg.Connection, alerts: Sequence[Alert], notify_after: float | None = None
) -> list[str]:
    """Store the alerts not stored yet, in one transaction; return the ids that were new.

    ON CONFLICT DO NOTHING: a redelivered alert changes nothing, so its triage state survives. With
    `notify_after`, a webhook notification is recorded for each new alert in the same transaction, due for the
    webhook's sweep that many seconds later (the first attempt normally comes sooner, from its queue)."""
    unique = list({a.alert_id: a for a in reversed(alerts)}.values())[::-1]  # first occurrence wins
    params = [
        (a.alert_id, a.transaction_id, a.card_token, a.customer_id, a.bank_id, list(a.rules), a.score, a.severity,
         list(a.reasons), a.amount_minor, a.currency, a.event_time, a.detected_at, a.kafka_partition, a.kafka_offset)
        for a in unique
    ]  # fmt: skip
    new: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        if params:
            cur.executemany(_INSERT, params, returning=True)
            while True:
                new.extend(row[0] for row in cur.fetchall())
                if not cur.nextset():
                    break
        if notify_after is not None and new:
            cur.execute(_NOTIFY, (new, notify_after))
    return new


def insert_alerts(
    conn: psycopg.Connection, alerts: Sequence[Alert], notify_after: float | None = None
) -> tuple[int, int]:
    """Store the alerts once each; return (inserted, duplicates)."""
    new = insert_new_alerts(conn, alerts, notify_after)
    return len(new), len(alerts) - len(new)


# --- reads ----------------------------------------------------------------------------------------------------
def list_alerts(
    conn: psycopg.Connection,
    since: datetime | None = None,
    status: str | None = None,
    bank: str | None = None,
    severity: str | None = None,
    limit: int | None = 100,
) -> list[dict]:
    """Alerts newest first (detected_at), optionally only those detected since a time, in a status, of a bank."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    where, args = [], []
    for column, op, value in (("detected_at", ">=", since), ("status", "=", status), ("bank_id", "=", bank),
                              ("severity", "=", severity)):  # fmt: skip
        if value is not None:
            where.append(f"{column} {op} %s")
            args.append(value)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY detected_at DESC, alert_id"
    if limit is not None:
        sql += " LIMIT %s"
        args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, args).fetchall()


def get_alert(conn: psycopg.Connection, alert_id: str) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE alert_id = %s", (alert_id,)).fetchone()
    if row is None:
        raise UnknownAlertError(alert_id)
    return row


def iter_alerts(conn: psycopg.Connection, batch_size: int = 2000) -> Iterator[dict]:
    """Every alert in detected_at order, streamed through a server-side cursor (the table may be large)."""
    with conn.transaction(), conn.cursor(name="alerts_export", row_factory=dict_row) as cur:
        cur.itersize = batch_size
        cur.execute(_SELECT + " ORDER BY detected_at, alert_id")
        yield from cur


def count_alerts(conn: psycopg.Connection) -> dict[str, int]:
    """Alerts per status (every status present, 0 when none), plus `total`."""
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(conn.execute("SELECT status, count(*) FROM alerts GROUP BY status").fetchall())
    counts["total"] = sum(counts.values())
    return counts


# --- triage ---------------------------------------------------------------------------------------------------
def resolve(
    conn: psycopg.Connection, alert_id: str, as_: str, note: str | None = None, assignee: str | None = None
) -> dict:
    """Record an analyst's decision: 'fraud' -> confirmed_fraud, 'legit' -> false_positive (the status names
    themselves are accepted too, and 'open' reopens). Note and assignee are kept when not given."""
    status = RESOLUTIONS.get(as_, as_)
    if status not in STATUSES:
        raise ValueError(f"resolve as one of {', '.join([*RESOLUTIONS, *STATUSES])}, got {as_!r}")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "UPDATE alerts SET status = %(status)s, note = coalesce(%(note)s, note), "
            "assignee = coalesce(%(assignee)s, assignee), updated_at = now(), "
            "triaged_at = CASE WHEN %(status)s = 'open' THEN NULL ELSE now() END "
            "WHERE alert_id = %(alert_id)s RETURNING alert_id",
            {"status": status, "note": note, "assignee": assignee, "alert_id": alert_id},
        )
        if cur.fetchone() is None:
            raise UnknownAlertError(alert_id)
    return get_alert(conn, alert_id)


# --- webhook bookkeeping ----------------------------------------------------------------------------------------
def due_notifications(conn: psycopg.Connection, limit: int = 100) -> list[Alert]:
    """The alerts whose undelivered notification is due, longest due first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.* FROM alert_notifications n JOIN alerts a USING (alert_id) "
            "WHERE n.delivered_at IS NULL AND n.next_attempt_at <= now() ORDER BY n.next_attempt_at LIMIT %s",
            (limit,),
        ).fetchall()
    return [Alert.from_record(row) for row in rows]


def record_attempt(
    conn: psycopg.Connection, alert_id: str, error: str | None, max_attempts: int, backoff: float, max_backoff: float
) -> tuple[int, float | None]:
    """Book one delivery attempt: delivered when `error` is None, else failed and due again after
    backoff * 2^(attempts - 1) seconds (capped), or given up after `max_attempts`. The table is the authority
    on the attempts, so a notification sent twice (queue and sweep) is still counted right.
    Returns (attempts so far, seconds until the retry or None)."""
    row = conn.execute(
        "INSERT INTO alert_notifications AS n (alert_id, attempts, last_error, delivered_at, next_attempt_at) "
        "VALUES (%(id)s, 1, %(error)s::text, CASE WHEN %(error)s::text IS NULL THEN now() END, "
        "        CASE WHEN %(error)s::text IS NOT NULL AND 1 < %(max)s "
        "             THEN now() + make_interval(secs => least(%(cap)s::float8, %(backoff)s::float8)) END) "
        "ON CONFLICT (alert_id) DO UPDATE SET attempts = n.attempts + 1, "
        "  last_error = coalesce(excluded.last_error, n.last_error), "
        "  delivered_at = coalesce(n.delivered_at, excluded.delivered_at), "
        "  next_attempt_at = CASE WHEN %(error)s::text IS NOT NULL AND n.delivered_at IS NULL "
        "                          AND n.attempts + 1 < %(max)s "
        "    THEN now() + make_interval(secs => least(%(cap)s::float8, %(backoff)s::float8 * 2 ^ n.attempts)) END, "
        "  updated_at = now() "
        "RETURNING attempts, extract(epoch FROM next_attempt_at - now())::float8",
        {"id": alert_id, "error": error, "max": max_attempts, "backoff": backoff, "cap": max_backoff},
    ).fetchone()
    return row[0], row[1]


def webhook_status(dsn: str) -> dict:
    """Webhook delivery counts for `rtfd status`: delivered, pending (incl. retrying), retrying (failed at least
    once, will try again), given_up (out of attempts), the oldest pending notification and the last error.
    Counts are 0 when no webhook was ever configured; `available` is False when the table is missing."""
    with connect(dsn) as conn:
        try:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL), "
                "       count(*) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL), "
                "       count(*) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL AND attempts > 0), "
                "       count(*) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NULL), "
                "       min(created_at) FILTER (WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL) "
                "FROM alert_notifications"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return {"available": False}
        last = conn.execute(
            "SELECT alert_id, last_error, updated_at FROM alert_notifications "
            "WHERE delivered_at IS NULL AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1"
        ).fetchone()
    return {
        "available": True, "delivered": row[0], "pending": row[1], "retrying": row[2], "given_up": row[3],
        "oldest_pending_at": row[4],
        "last_error": {"alert_id": last[0], "error": last[1], "at": last[2]} if last else None,
    }  # fmt: skip
