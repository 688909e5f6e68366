"""Reconciliation after a chaos run: what the load delivered against what the platform kept.

Transactions: the ids Kafka acknowledged to the load's producers against the archive rows of the run's banks
(missing, duplicated). Alerts: the run's alerts on `fraud-alerts` (read back from the offsets recorded before
the run) against the `alerts` table: none missing, none stored twice, no transaction with two alerts. The topic
itself may carry a redelivered alert (the job's alert sink is at-least-once by design); that count is reported.
DLQ: the run's injected keys found on `transactions-dlq`.
"""

from __future__ import annotations

import time
import uuid

import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from rtfd import topology
from rtfd.bench import archived_ids
from rtfd.chaos.probes import end_offsets
from rtfd.config import Settings
from rtfd.stack import StackError
from services.kafka_sink import consume_available


def read_range(settings: Settings, topic: str, start: dict[int, int], timeout: float = 120.0) -> list:
    """Every message of `topic` from `start` (partition -> offset) up to the end offsets of now."""
    end = end_offsets(settings, topic)
    todo = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not todo:
        return []
    consumer = Consumer(settings.kafka_consumer_conf(f"rtfd-chaos-read-{uuid.uuid4().hex[:8]}", principal="admin"))
    consumer.assign([TopicPartition(topic, p, s) for p, (s, _e) in todo.items()])
    out, reached = [], set()
    deadline = time.monotonic() + timeout
    try:
        while len(reached) < len(todo):
            if time.monotonic() > deadline:
                raise StackError(f"reading {topic} back did not reach its end offsets within {timeout:.0f}s")
            for msg in consume_available(consumer, 1000, timeout=1.0):
                if msg.error() is not None:
                    continue
                p = msg.partition()
                if msg.offset() < todo[p][1]:
                    out.append(msg)
                if msg.offset() >= todo[p][1] - 1:
                    reached.add(p)
    finally:
        consumer.close()
    return out


def topic_alerts(settings: Settings, start: dict[int, int], banks: set[str]) -> list[dict]:
    """The run's alerts on fraud-alerts (every copy, so redeliveries count)."""
    decode = AvroDeserializer(SchemaRegistryClient(settings.registry_conf()))
    ctx = SerializationContext(topology.FRAUD_ALERTS, MessageField.VALUE)
    alerts = []
    for msg in read_range(settings, topology.FRAUD_ALERTS, start):
        alert = decode(msg.value(), ctx) if msg.value() is not None else None
        if alert and alert["bank_id"] in banks:
            alerts.append(alert)
    return alerts


def table_alerts(dsn: str, banks: list[str]) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT alert_id, transaction_id FROM alerts WHERE bank_id = ANY(%s)", (banks,)
        ).fetchall()


def archive_duplicates(dsn: str, banks: list[str]) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) - count(DISTINCT transaction_id) FROM transactions WHERE bank_id = ANY(%s)", (banks,)
        ).fetchone()[0]


def dlq_keys(settings: Settings, start: dict[int, int], prefix: str) -> list[str]:
    keys = []
    for msg in read_range(settings, topology.TRANSACTIONS_DLQ, start):
        key = msg.key().decode(errors="replace") if msg.key() is not None else ""
        if key.startswith(prefix):
            keys.append(key)
    return keys


def wait_alerts_stored(settings: Settings, start: dict[int, int], banks: list[str], timeout: float) -> None:
    """Give the alert consumer time to store every alert the topic holds for the run's banks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        on_topic = {a["alert_id"] for a in topic_alerts(settings, start, set(banks))}
        if on_topic <= {a for a, _t in table_alerts(settings.postgres_dsn, banks)}:
            return
        time.sleep(2)


def reconcile(settings: Settings, banks: list[str], delivered: set[str], start: dict[str, dict[int, int]],
              bad_prefix: str | None = None) -> dict:
    from flink.rules.engine import alert_id as expected_alert_id

    dsn = settings.postgres_dsn
    archived = archived_ids(dsn, banks)
    on_topic = topic_alerts(settings, start[topology.FRAUD_ALERTS], set(banks))
    stored = table_alerts(dsn, banks)
    stored_ids = [a for a, _t in stored]
    per_tx: dict[str, int] = {}
    for _a, tx in stored:
        per_tx[tx] = per_tx.get(tx, 0) + 1
    topic_ids = {a["alert_id"] for a in on_topic}
    result = {
        "delivered": len(delivered),
        "archived": len(archived & delivered),
        "missing": len(delivered - archived),
        "missing_sample": sorted(delivered - archived)[:5],
        "archived_not_delivered": len(archived - delivered),
        "duplicate_archive_rows": archive_duplicates(dsn, banks),
        "alerts_on_topic": len(on_topic),
        "alerts_topic_redelivered": len(on_topic) - len(topic_ids),
        "alerts_stored": len(stored),
        "alerts_missing_from_table": len(topic_ids - set(stored_ids)),
        "duplicate_alerts": (len(stored_ids) - len(set(stored_ids))) + sum(n - 1 for n in per_tx.values() if n > 1),
        "alerts_with_foreign_id": sum(a != expected_alert_id(t) for a, t in stored),
        "alerts_for_undelivered": len(set(per_tx) - delivered),
    }
    if bad_prefix is not None:
        keys = dlq_keys(settings, start[topology.TRANSACTIONS_DLQ], bad_prefix)
        result["dlq_records"] = len(keys)
        result["dlq_keys"] = sorted(set(keys))
        with psycopg.connect(dsn) as conn:
            result["bad_archived"] = conn.execute(
                "SELECT count(*) FROM transactions WHERE transaction_id LIKE %s", (f"{bad_prefix}%",)
            ).fetchone()[0]
    return result
