"""Every query of the dashboard, as plain functions: the live feed and KPIs, triage, and history.

Live and triage functions take an open psycopg connection (autocommit) and read PostgreSQL, where alerts land
within a second. History functions take a `Source` and use only SQL that PostgreSQL and DuckDB both speak
(named `%(x)s` parameters, date_trunc, FILTER, unnest, no intervals computed in SQL), so they can move to the
DuckDB lakehouse by swapping the source. Everything aggregates in the database (GROUP BY, LIMIT): no function
returns more rows than its limit, whatever the size of the archive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg.rows import dict_row

from services.alerts import store

# --- extract: the live feed ----------------------------------------------------------------------------------------
FEED_COLUMNS = (
    "alert_id", "stored_at", "detected_at", "event_time", "bank_id", "severity", "score", "rules", "reasons",
    "amount_minor", "currency", "transaction_id", "card_token", "status", "assignee",
)  # fmt: skip
FEED_LOOKBACK = timedelta(seconds=5)
"""stored_at is the inserting transaction's start time, so a row can become visible after a later one; the feed
looks back this far and skips what it has already shown."""


@dataclass
class FeedCursor:
    """Where the live feed stands: the newest (stored_at, alert_id) shown and the ids shown within the lookback."""

    stored_at: datetime | None = None
    alert_id: str = ""
    recent: dict[str, datetime] = field(default_factory=dict)

    def advance(self, rows: Sequence[Mapping]) -> None:
        for row in rows:
            self.recent[row["alert_id"]] = row["stored_at"]
            if self.stored_at is None or (row["stored_at"], row["alert_id"]) > (self.stored_at, self.alert_id):
                self.stored_at, self.alert_id = row["stored_at"], row["alert_id"]
        if self.stored_at is not None:
            horizon = self.stored_at - FEED_LOOKBACK
            self.recent = {k: v for k, v in self.recent.items() if v >= horizon}


@dataclass(frozen=True)
class FeedFilter:
    bank: str | None = None
    severity: str | None = None
    rule: str | None = None

    def where(self) -> tuple[list[str], dict]:
        clauses, params = [], {}
        if self.bank:
            clauses.append("bank_id = %(bank)s")
            params["bank"] = self.bank
        if self.severity:
            clauses.append("severity = %(severity)s")
            params["severity"] = self.severity
        if self.rule:
            clauses.append("%(rule)s = ANY(rules)")
            params["rule"] = self.rule
        return clauses, params


_FEED_SELECT = f"SELECT {', '.join(FEED_COLUMNS)} FROM alerts"  # noqa: S608


def latest_alerts(conn: psycopg.Connection, filters: FeedFilter = FeedFilter(), limit: int = 500) -> list[dict]:
    """The newest `limit` alerts matching the filters, oldest first (the feed's first page)."""
    clauses, params = filters.where()
    sql = _FEED_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
    sql += " ORDER BY stored_at DESC, alert_id DESC LIMIT %(limit)s"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, {**params, "limit": limit}).fetchall()
    return rows[::-1]


def new_alerts(
    conn: psycopg.Connection, cursor: FeedCursor, filters: FeedFilter = FeedFilter(), limit: int = 500
) -> list[dict]:
    """Alerts stored after the cursor (and not shown yet), oldest first, at most `limit`; advances the cursor.

    A first call (empty cursor) returns the newest `limit` alerts."""
    if cursor.stored_at is None:
        rows = latest_alerts(conn, filters, limit)
    else:
        clauses, params = filters.where()
        clauses.append("stored_at >= %(horizon)s")
        clauses.append("NOT (alert_id = ANY(%(seen)s))")
        params.update(horizon=cursor.stored_at - FEED_LOOKBACK, seen=list(cursor.recent), limit=limit)
        sql = _FEED_SELECT + " WHERE " + " AND ".join(clauses) + " ORDER BY stored_at, alert_id LIMIT %(limit)s"
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sql, params).fetchall()
    cursor.advance(rows)
    return rows


def filter_options(conn: psycopg.Connection, days: int = 7) -> dict[str, list[str]]:
    """Banks and rules seen in alerts of the last days, for the feed's filters."""
    since = {"since": datetime.now(UTC) - timedelta(days=days)}
    banks = conn.execute("SELECT DISTINCT bank_id FROM alerts WHERE detected_at >= %(since)s ORDER BY 1", since)
    rules = conn.execute(
        "SELECT DISTINCT rule FROM (SELECT unnest(rules) AS rule FROM alerts WHERE detected_at >= %(since)s) r "
        "ORDER BY 1",
        since,
    )
    return {"banks": [r[0] for r in banks.fetchall()], "rules": [r[0] for r in rules.fetchall()]}


# --- extract: live KPIs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveKpis:
    transactions_per_s: float
    alerts_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    latency_samples: int
    at: datetime


RATE_WINDOW = timedelta(seconds=10)
LATENCY_WINDOW = timedelta(minutes=5)
BANK_RATE_WINDOW = timedelta(minutes=15)


def live_kpis(conn: psycopg.Connection, at: datetime | None = None) -> LiveKpis:
    """Transactions/s archived (processed_at) and alerts/s detected (detected_at) over the 10 s before `at`
    (default: the database's now), and the detection latency (detected_at - event_time) p50/p99 over 5 min."""
    row = conn.execute(
        """
        WITH w AS (SELECT coalesce(%(at)s::timestamptz, now()) AS at)
        SELECT w.at,
               (SELECT count(*) FROM transactions
                 WHERE processed_at > w.at - %(rate)s::interval AND processed_at <= w.at),
               (SELECT count(*) FROM alerts
                 WHERE detected_at > w.at - %(rate)s::interval AND detected_at <= w.at),
               l.p50, l.p99, l.n
        FROM w, LATERAL (
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM detected_at - event_time)) AS p50,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM detected_at - event_time)) AS p99,
                   count(*) AS n
            FROM alerts WHERE detected_at > w.at - %(latency)s::interval AND detected_at <= w.at
        ) l
        """,
        {"at": at, "rate": RATE_WINDOW, "latency": LATENCY_WINDOW},
    ).fetchone()
    seconds = RATE_WINDOW.total_seconds()
    return LiveKpis(
        transactions_per_s=row[1] / seconds, alerts_per_s=row[2] / seconds,
        latency_p50_s=None if row[3] is None else float(row[3]),
        latency_p99_s=None if row[4] is None else float(row[4]),
        latency_samples=row[5], at=row[0],
    )  # fmt: skip


def fraud_rate_by_bank(conn: psycopg.Connection, at: datetime | None = None) -> list[dict]:
    """Per bank over the 15 min before `at`: transactions archived, alerts detected, alerts per transaction."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            WITH w AS (SELECT coalesce(%(at)s::timestamptz, now()) AS at),
            tx AS (SELECT bank_id, count(*) AS n FROM transactions, w
                    WHERE processed_at > w.at - %(window)s::interval AND processed_at <= w.at GROUP BY bank_id),
            al AS (SELECT bank_id, count(*) AS n FROM alerts, w
                    WHERE detected_at > w.at - %(window)s::interval AND detected_at <= w.at GROUP BY bank_id)
            SELECT bank_id, coalesce(tx.n, 0) AS transactions, coalesce(al.n, 0) AS alerts,
                   coalesce(al.n, 0)::float8 / nullif(tx.n, 0) AS alert_rate
            FROM tx FULL JOIN al USING (bank_id) ORDER BY bank_id
            """,
            {"at": at, "window": BANK_RATE_WINDOW},
        ).fetchall()


# --- extract: triage -----------------------------------------------------------------------------------------------
def transaction(conn: psycopg.Connection, transaction_id: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM transactions WHERE transaction_id = %s", (transaction_id,)).fetchone()


def card_history(conn: psycopg.Connection, card_token: str, limit: int = 20) -> list[dict]:
    """The card's last `limit` archived transactions, newest first, each marked when an alert flagged it."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT t.transaction_id, t.event_time, t.bank_id, t.merchant_id, t.terminal_id, t.mcc, t.amount_minor,
                   t.currency, t.channel, t.country,
                   EXISTS (SELECT 1 FROM alerts a WHERE a.transaction_id = t.transaction_id) AS alerted
            FROM transactions t WHERE t.card_token = %s ORDER BY t.event_time DESC LIMIT %s
            """,
            (card_token, limit),
        ).fetchall()


def alert(conn: psycopg.Connection, alert_id: str) -> dict:
    return store.get_alert(conn, alert_id)


def triage(
    conn: psycopg.Connection, alert_id: str, decision: str, note: str | None = None, assignee: str | None = None
) -> dict:
    """Record the analyst's decision ('fraud' or 'legit') through the alert store; returns the updated alert."""
    return store.resolve(conn, alert_id, decision, note=note or None, assignee=assignee or None)


# --- extract: history ----------------------------------------------------------------------------------------------
class Source(Protocol):
    """Where history queries run: PostgreSQL today, the DuckDB lakehouse later (same SQL, same parameters)."""

    def rows(self, sql: str, params: Mapping[str, object]) -> list[dict]: ...


class PostgresSource:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, object]) -> list[dict]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()


def as_source(source: Source | psycopg.Connection) -> Source:
    return PostgresSource(source) if isinstance(source, psycopg.Connection) else source


LAKE_ENV = "RTFD_DASHBOARD_LAKE"
"""The lakehouse's DuckDB file (`rtfd up` sets it); once the file exists, history reads the lake, not PostgreSQL."""


class DuckDBSource:
    """History from the lakehouse: the DuckDB database's views over the Parquet lake (warehouse/lake.py), in UTC.
    Opened read-only per query, so a rebuild (a new file renamed over the old one) is seen and never blocked."""

    def __init__(self, database: Path):
        self.database = database

    def rows(self, sql: str, params: Mapping[str, object]) -> list[dict]:
        import duckdb

        sql = re.sub(r"%\((\w+)\)s", r"$\1", sql)  # psycopg's named parameters -> DuckDB's
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'")
            cur = con.execute(sql, used)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            con.close()


def history_source(source: Source | psycopg.Connection) -> Source:
    """The lake's DuckDB database when it exists (LAKE_ENV), else the given source (PostgreSQL)."""
    lake = os.environ.get(LAKE_ENV)
    if isinstance(source, psycopg.Connection) and lake and Path(lake).exists():
        return DuckDBSource(Path(lake))
    return as_source(source)


@dataclass(frozen=True)
class Period:
    """A half-open time range [since, until) and an optional bank, shared by every history query."""

    since: datetime
    until: datetime
    bank: str | None = None

    @classmethod
    def last(cls, days: float, bank: str | None = None, until: datetime | None = None) -> Period:
        until = until or datetime.now(UTC)
        return cls(until - timedelta(days=days), until, bank)

    def where(self, time_column: str, bank_column: str = "bank_id") -> tuple[str, dict]:
        sql = f"{time_column} >= %(since)s AND {time_column} < %(until)s"
        params: dict = {"since": self.since, "until": self.until}
        if self.bank:
            sql += f" AND {bank_column} = %(bank)s"
            params["bank"] = self.bank
        return sql, params


# dimension name -> column of `transactions`; never format anything else into SQL
DIMENSIONS = {
    "bank": "bank_id", "mcc": "mcc", "channel": "channel", "country": "country",
    "merchant": "merchant_id", "terminal": "terminal_id",
}  # fmt: skip


def daily_volumes(source: Source | psycopg.Connection, period: Period) -> list[dict]:
    """Per UTC day (by event time): transactions, alerts, alerts confirmed as fraud."""
    tx_where, params = period.where("event_time")
    return history_source(source).rows(
        f"""
        WITH tx AS (SELECT date_trunc('day', event_time AT TIME ZONE 'UTC') AS day, count(*) AS transactions
                      FROM transactions WHERE {tx_where} GROUP BY 1),
             al AS (SELECT date_trunc('day', event_time AT TIME ZONE 'UTC') AS day, count(*) AS alerts,
                           count(*) FILTER (WHERE status = 'confirmed_fraud') AS confirmed_fraud
                      FROM alerts WHERE {tx_where} GROUP BY 1)
        SELECT day, coalesce(tx.transactions, 0) AS transactions, coalesce(al.alerts, 0) AS alerts,
               coalesce(al.confirmed_fraud, 0) AS confirmed_fraud
        FROM tx FULL JOIN al USING (day) ORDER BY day
        """,  # noqa: S608 - only fixed column names are formatted in
        params,
    )


def alert_rate_by(
    source: Source | psycopg.Connection, dimension: str, period: Period, min_volume: int = 1, limit: int = 20
) -> list[dict]:
    """Per value of a transaction dimension (bank, mcc, channel, country, merchant, terminal): transactions,
    flagged transactions (at least one alert) and their share, highest share first; values with fewer than
    `min_volume` transactions are left out (a merchant with 1 transaction and 1 alert is not the riskiest)."""
    column = DIMENSIONS[dimension]
    where, params = period.where("t.event_time", "t.bank_id")
    return history_source(source).rows(
        f"""
        SELECT key, count(*) AS transactions, count(*) FILTER (WHERE flagged) AS alerts,
               (count(*) FILTER (WHERE flagged))::float8 / count(*) AS alert_rate
        FROM (SELECT t.{column} AS key,
                     EXISTS (SELECT 1 FROM alerts a WHERE a.transaction_id = t.transaction_id) AS flagged
                FROM transactions t WHERE {where}) x
        GROUP BY key HAVING count(*) >= %(min_volume)s
        ORDER BY alert_rate DESC, transactions DESC, key LIMIT %(limit)s
        """,  # noqa: S608 - only fixed column names are formatted in
        {**params, "min_volume": min_volume, "limit": limit},
    )


def riskiest_merchants(source, period: Period, min_volume: int = 20, limit: int = 15) -> list[dict]:
    return alert_rate_by(source, "merchant", period, min_volume, limit)


def riskiest_terminals(source, period: Period, min_volume: int = 20, limit: int = 15) -> list[dict]:
    return alert_rate_by(source, "terminal", period, min_volume, limit)


def rule_hits_per_day(source: Source | psycopg.Connection, period: Period, limit: int = 2000) -> list[dict]:
    """Alerts per rule per UTC day (by detection time); an alert naming two rules counts for both."""
    where, params = period.where("detected_at")
    return history_source(source).rows(
        f"""
        SELECT date_trunc('day', detected_at AT TIME ZONE 'UTC') AS day, rule, count(*) AS hits
        FROM (SELECT detected_at, unnest(rules) AS rule FROM alerts WHERE {where}) r
        GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(limit)s
        """,  # noqa: S608
        {**params, "limit": limit},
    )


def rule_precision(source: Source | psycopg.Connection, period: Period) -> list[dict]:
    """Per rule, against the ground-truth labels (`fraud_labels`) and, separately, the analysts' triage.

    The unit is the transaction the rule flagged (an alert names its rules; a transaction flagged twice by a rule
    counts once); the period and bank select transactions by their event time, alerts and labels alike.
    - labelled / labelled_fraud: flagged transactions that have a label / whose label says fraud;
      precision = labelled_fraud / labelled (None while none of its transactions is labelled).
    - fraud_labelled: the period's transactions labelled fraud (found in the archive, where their time is);
      fraud_caught: those the rule flagged; recall = fraud_caught / fraud_labelled (None without fraud labels).
    - alerts, confirmed_fraud, false_positive, open: the rule's alerts by triage status; triage_precision =
      confirmed / (confirmed + false positives), open alerts counting neither way."""
    alert_where, params = period.where("event_time")
    tx_where, _ = period.where("t.event_time", "t.bank_id")
    return as_source(source).rows(
        f"""
        WITH al AS (SELECT unnest(rules) AS rule, transaction_id, status FROM alerts WHERE {alert_where}),
        flagged AS (SELECT rule, transaction_id FROM al GROUP BY rule, transaction_id),
        fraud AS (SELECT l.transaction_id FROM fraud_labels l JOIN transactions t ON t.transaction_id = l.transaction_id
                   WHERE l.is_fraud AND {tx_where}),
        fraud_total AS (SELECT count(*) AS n FROM fraud),
        by_label AS (
            SELECT f.rule, count(l.transaction_id) AS labelled,
                   count(*) FILTER (WHERE l.is_fraud) AS labelled_fraud,
                   count(fr.transaction_id) AS fraud_caught
            FROM flagged f LEFT JOIN fraud_labels l ON l.transaction_id = f.transaction_id
                           LEFT JOIN fraud fr ON fr.transaction_id = f.transaction_id
            GROUP BY f.rule),
        by_triage AS (
            SELECT rule, count(*) AS alerts,
                   count(*) FILTER (WHERE status = 'confirmed_fraud') AS confirmed_fraud,
                   count(*) FILTER (WHERE status = 'false_positive') AS false_positive,
                   count(*) FILTER (WHERE status = 'open') AS open
            FROM al GROUP BY rule)
        SELECT t.rule, t.alerts, b.labelled, b.labelled_fraud,
               b.labelled_fraud::float8 / nullif(b.labelled, 0) AS precision,
               b.fraud_caught, ft.n AS fraud_labelled, b.fraud_caught::float8 / nullif(ft.n, 0) AS recall,
               t.confirmed_fraud, t.false_positive, t.open,
               t.confirmed_fraud::float8 / nullif(t.confirmed_fraud + t.false_positive, 0) AS triage_precision
        FROM by_triage t JOIN by_label b ON b.rule = t.rule CROSS JOIN fraud_total ft
        ORDER BY t.alerts DESC, t.rule
        """,  # noqa: S608 - only fixed column names are formatted in
        params,
    )


def alert_map(
    source: Source | psycopg.Connection, period: Period, cell_degrees: float = 0.5, limit: int = 2000
) -> list[dict]:
    """Alerts whose transaction has a location, counted per grid cell (cell_degrees wide), busiest first."""
    where, params = period.where("a.detected_at", "a.bank_id")
    return history_source(source).rows(
        f"""
        SELECT round(t.lat / %(cell)s) * %(cell)s AS lat, round(t.lon / %(cell)s) * %(cell)s AS lon,
               count(*) AS alerts, max(a.score) AS max_score
        FROM alerts a JOIN transactions t ON t.transaction_id = a.transaction_id
        WHERE {where} AND t.lat IS NOT NULL AND t.lon IS NOT NULL
        GROUP BY 1, 2 ORDER BY alerts DESC, 1, 2 LIMIT %(limit)s
        """,  # noqa: S608
        {**params, "cell": cell_degrees, "limit": limit},
    )


# --- transform: display helpers ------------------------------------------------------------------------------------
_EXPONENTS = {"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
              "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
              "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}  # fmt: skip


def major_amount(amount_minor: int, currency: str) -> float:
    """Minor units -> the amount an analyst reads (ISO 4217 exponent; 2 for most currencies)."""
    return amount_minor / 10 ** _EXPONENTS.get(currency, 2)
