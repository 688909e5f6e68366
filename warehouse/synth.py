"""Synthetic archive rows for the lake benchmark: N transactions (with ~1% alerts and their fraud labels)
spread over a few event dates, generated with numpy and loaded with COPY, fast enough for 10M rows.

The rows pass every archive constraint and every expectation of the validation suite; their ids start with
a run prefix so a benchmark can delete exactly what it inserted.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

CHANNELS = np.array(["POS", "ECOM", "ATM", "MOBILE"])
CURRENCIES = np.array(["EUR", "EUR", "EUR", "GBP", "USD", "CHF", "SEK", "PLN"])
COUNTRIES = np.array(["DE", "FR", "NL", "GB", "US", "CH", "SE", "PL", "ES", "IT"])
MCCS = np.array(["5411", "5812", "5999", "6011", "4111", "5732", "7995", "5311"])
RULES = np.array(["velocity@1", "card_testing@1", "impossible_travel@1", "large_amount@1", "new_device@1"])
SEVERITIES = np.array(["LOW", "MEDIUM", "HIGH", "CRITICAL"])
CHUNK = 500_000
LOCAL_MERCHANTS, ONLINE_MERCHANTS = 5000, 120


def _csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue()


def _copy(conn: psycopg.Connection, table: str, data: pa.Table) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(data.column_names)}) FROM STDIN (FORMAT csv)") as cp:
        cp.write(_csv(data))


def _pg_array(values: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add("{", values.astype(str)), "}")


def chunk_tables(prefix: str, start: int, n: int, total: int, days: list[date], banks: int,
                 rng: np.random.Generator, fraud_share: float = 0.01) -> dict[str, pa.Table]:
    """Rows [start, start+n) of a run of `total`: transactions, alerts for ~fraud_share of them, labels for half
    of those.

    Shaped like the simulator's world (services/producer/world.py), because the marts' cost depends on it: row
    i's event time is i/total of the way through the days (plus up to a second of jitter), so rows come in
    event-time order as the job archives them; one customer per `total // 50` rows, each of one bank, with a
    home country (95 % of purchases), one card (every tenth customer two), ten local merchants for in-person
    payments and five favourite online shops (of 120) for card-not-present ones.
    """
    idx = np.arange(start, start + n)
    tx_id = np.char.add(f"{prefix}-", idx.astype(str))
    span_us = len(days) * 86_400_000_000
    offset = idx * (span_us // max(total, 1)) + rng.integers(0, 1_000_000, n)
    event = np.datetime64(days[0], "us") + np.minimum(offset, span_us - 1).astype("timedelta64[us]")
    customer = rng.integers(0, max(1000, total // 50), n)
    bank = np.char.add("bank-", (customer % banks).astype(str))
    cust_id = np.char.add(np.char.add(bank, "-C"), customer.astype(str))
    second_card = (customer % 10 == 0) & (rng.random(n) < 0.3)
    card = np.char.add(np.char.add("tok-", cust_id), np.where(second_card, "-2", "-1"))
    channel = CHANNELS[rng.choice(4, n, p=[0.55, 0.25, 0.1, 0.1])]
    online = (channel == "ECOM") | (channel == "MOBILE")
    local = (customer * 7919 + rng.integers(0, 10, n) * 131) % LOCAL_MERCHANTS
    shop = LOCAL_MERCHANTS + (customer * 31 + rng.integers(0, 5, n)) % ONLINE_MERCHANTS
    merchant = np.where(online, shop, local)
    terminal = merchant * 4 + np.where(online, 0, rng.integers(0, 4, n))  # an online shop: one virtual terminal
    abroad = rng.random(n) < 0.05
    country = COUNTRIES[np.where(abroad, rng.integers(0, len(COUNTRIES), n), customer % len(COUNTRIES))]
    ingested = event + rng.integers(50_000, 2_000_000, n).astype("timedelta64[us]")
    tx = pa.table({
        "transaction_id": tx_id, "event_time": pa.array(event, pa.timestamp("us", tz="UTC")), "bank_id": bank,
        "customer_id": cust_id, "card_token": card, "merchant_id": np.char.add("M", merchant.astype(str)),
        "terminal_id": np.char.add("T", terminal.astype(str)),
        "mcc": MCCS[merchant % len(MCCS)], "amount_minor": rng.integers(100, 200_000, n),
        "currency": CURRENCIES[rng.integers(0, len(CURRENCIES), n)], "channel": channel,
        "country": country, "lat": rng.uniform(-60, 70, n),
        "lon": rng.uniform(-170, 170, n), "schema_version": np.full(n, 2, np.int16),
        "ingested_at": pa.array(ingested, pa.timestamp("us", tz="UTC")),
        "processed_at": pa.array(ingested + np.timedelta64(30_000, "us"), pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    flagged = np.flatnonzero(rng.random(n) < fraud_share)
    m = len(flagged)
    detected = event[flagged] + rng.integers(100_000, 5_000_000, m).astype("timedelta64[us]")
    severity = SEVERITIES[rng.integers(0, 4, m)]
    alerts = pa.table({
        "alert_id": np.char.add("A", tx_id[flagged]), "transaction_id": tx_id[flagged],
        "card_token": card[flagged], "customer_id": cust_id[flagged],
        "bank_id": bank[flagged],
        "rules": _pg_array(RULES[rng.integers(0, len(RULES), m)]), "score": rng.uniform(0.3, 1.0, m),
        "severity": severity, "reasons": np.full(m, "{synthetic}"),
        "amount_minor": tx["amount_minor"].to_numpy()[flagged],
        "currency": tx["currency"].to_numpy(zero_copy_only=False)[flagged],
        "event_time": pa.array(event[flagged], pa.timestamp("us", tz="UTC")),
        "detected_at": pa.array(detected, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    labelled = flagged[rng.random(m) < 0.5]
    labels = pa.table({
        "transaction_id": tx_id[labelled], "is_fraud": np.ones(len(labelled), bool),
        "scenario": np.full(len(labelled), "synthetic"),
        "labelled_at": pa.array(event[labelled] + np.timedelta64(3600, "s"), pa.timestamp("us", tz="UTC")),
        "source": np.full(len(labelled), "synthetic"),
    })  # fmt: skip
    return {"transactions": tx, "alerts": alerts, "fraud_labels": labels}


def insert(dsn: str, rows: int, prefix: str, first_day: date, days: int = 3, banks: int = 4, seed: int = 7,
           say: Callable[[str], None] = lambda _m: None) -> list[date]:
    """Insert `rows` synthetic transactions over `days` event dates starting at first_day; return the dates."""
    rng = np.random.default_rng(seed)
    dates = [first_day + timedelta(days=i) for i in range(days)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            for table, data in chunk_tables(prefix, start, n, rows, dates, banks, rng).items():
                _copy(conn, table, data)
            say(f"synthesized {start + n:,}/{rows:,} rows")
        conn.execute("ANALYZE transactions")
    return dates


def delete(dsn: str, prefix: str) -> None:
    """Remove a run's rows (labels, alerts, transactions)."""
    like = f"{prefix}-%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM fraud_labels WHERE transaction_id LIKE %s", (like,))
        conn.execute("DELETE FROM alerts WHERE transaction_id LIKE %s", (like,))
        conn.execute("DELETE FROM transactions WHERE transaction_id LIKE %s", (like,))


def today_utc() -> date:
    return datetime.now(UTC).date()
