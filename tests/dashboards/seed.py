"""Rows the dashboard tests write into the stack's PostgreSQL: transactions and alerts of a bank of their own."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

import psycopg

from services.alerts import store
from services.alerts.alert import Alert
from services.labels import store as label_store
from services.labels.label import FraudLabel

_COUNTER = itertools.count()

TX_COLUMNS = (
    "transaction_id", "event_time", "bank_id", "customer_id", "card_token", "merchant_id", "terminal_id", "mcc",
    "amount_minor", "currency", "channel", "country", "lat", "lon", "ingested_at", "processed_at",
)  # fmt: skip


def new_bank() -> str:
    return f"dash-{uuid.uuid4().hex[:10]}"


def insert_transaction(conn: psycopg.Connection, bank: str, event_time: datetime, **overrides) -> dict:
    n = next(_COUNTER)
    row = {
        "transaction_id": f"{bank}-tx-{n}", "event_time": event_time, "bank_id": bank, "customer_id": f"{bank}-c",
        "card_token": f"{bank}-card", "merchant_id": f"{bank}-m", "terminal_id": f"{bank}-t", "mcc": "5411",
        "amount_minor": 1000 + n, "currency": "EUR", "channel": "POS", "country": "DE", "lat": 52.52,
        "lon": 13.40, "ingested_at": event_time, "processed_at": event_time + timedelta(milliseconds=50),
    }  # fmt: skip
    row.update(overrides)
    conn.execute(
        f"INSERT INTO transactions ({', '.join(TX_COLUMNS)}) VALUES ({', '.join(['%s'] * len(TX_COLUMNS))})",  # noqa: S608
        [row[c] for c in TX_COLUMNS],
    )
    return row


def make_alert(tx: dict, detected_at: datetime | None = None, rules=("velocity",), severity="HIGH",
               alert_id: str | None = None, score: float = 0.9) -> Alert:  # fmt: skip
    return Alert(
        alert_id=alert_id or f"{tx['transaction_id']}-alert", transaction_id=tx["transaction_id"],
        card_token=tx["card_token"], customer_id=tx["customer_id"], bank_id=tx["bank_id"], rules=tuple(rules),
        score=score, severity=severity, reasons=("test reason",), amount_minor=tx["amount_minor"],
        currency=tx["currency"], event_time=tx["event_time"],
        detected_at=detected_at or tx["event_time"] + timedelta(milliseconds=300),
    )  # fmt: skip


def insert_alerts(conn: psycopg.Connection, alerts: list[Alert]) -> None:
    inserted, _dupes = store.insert_alerts(conn, alerts)
    assert inserted == len(alerts)


def insert_label(conn: psycopg.Connection, tx: dict, is_fraud: bool, labelled_at: datetime | None = None,
                 source: str = "chargeback") -> None:  # fmt: skip
    """A ground-truth label for a seeded transaction, stored as the labels consumer would (newest wins)."""
    at = labelled_at or tx["event_time"] + timedelta(days=1)
    label_store.upsert_labels(conn, [FraudLabel(tx["transaction_id"], is_fraud, None, at, source)])
