"""The labels consumer against real Kafka, registry and PostgreSQL: each label stored once, the newest wins, poison
to the dead-letter topic; the stack's own `labels-consumer` component end to end; the dashboard role may read.

Tests of the consumer class use a labels topic, dead-letter topic, group and transaction ids of their own, so they
are isolated from each other and from the stack's `fraud-labels`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from dashboards.role import dashboard_dsn, enable_login
from rtfd.config import Settings
from rtfd.stack.postgres import can_connect
from rtfd.stack.status import consumer_lag
from services.kafka_sink import connect
from services.labels import GROUP_ID, store
from services.labels.consumer import LabelConsumer
from services.labels.label import FraudLabel
from services.producer.sender import avro_serializer
from services.replay.labels import load_labels
from tests.kafka_helpers import create_topic
from tests.services.test_alert_consumer import throwaway_pg  # noqa: F401 - a fixture: a PostgreSQL we may stop

pytestmark = pytest.mark.stack


class LabelsTopic:
    """A fresh labels topic, its dead-letter topic, a group, and a producer writing Avro labels or raw bytes."""

    def __init__(self, stack: Settings, partitions: int = 3):
        self.stack = stack
        self.prefix = uuid.uuid4().hex[:10]
        self.topic = create_topic(stack, f"test-labels-{self.prefix}", partitions)
        self.dlq = f"test-labels-{self.prefix}-dlq"  # created by the consumer, as fraud-labels-dlq would be
        self.group = f"test-labels-consumer-{self.prefix}"
        self.producer = Producer(stack.kafka_producer_conf(principal="admin"))
        self.serialize = avro_serializer(SchemaRegistryClient(stack.registry_conf()), schemas.fraud_label_schema())

    def tx(self, n: int) -> str:
        return f"{self.prefix}-t{n}"

    def label(self, n: int, at: datetime, is_fraud: bool = True, source: str = "simulator", **overrides) -> dict:
        rec = {"transaction_id": self.tx(n), "is_fraud": is_fraud, "scenario": "card_testing" if is_fraud else None,
               "labelled_at": at, "source": source}  # fmt: skip
        rec.update(overrides)
        return rec

    def send(self, *records: dict) -> None:
        for rec in records:
            value = self.serialize(rec, SerializationContext(self.topic, MessageField.VALUE))
            self.producer.produce(self.topic, key=rec["transaction_id"].encode(), value=value)
        assert self.producer.flush(30) == 0

    def send_raw(self, value: bytes | None, key: bytes = b"poison") -> None:
        self.producer.produce(self.topic, key=key, value=value)
        assert self.producer.flush(30) == 0

    def end_offsets(self) -> dict[int, int]:
        c = Consumer(self.stack.kafka_consumer_conf(self.group + "-probe", principal="admin"))
        try:
            parts = c.list_topics(self.topic, timeout=10).topics[self.topic].partitions
            return {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1] for p in parts}
        finally:
            c.close()

    def committed(self) -> dict[int, int]:
        # never subscribes: only reads the group's offsets
        c = Consumer(self.stack.kafka_consumer_conf(self.group, principal="admin"))
        try:
            tps = c.committed([TopicPartition(self.topic, p) for p in self.end_offsets()], timeout=10)
            return {tp.partition: max(tp.offset, 0) for tp in tps}
        finally:
            c.close()

    def dead_letters(self, expected: int, timeout: float = 30.0) -> list:
        c = Consumer(self.stack.kafka_consumer_conf(f"{self.group}-dlq-reader", principal="admin"))
        c.subscribe([self.dlq])
        out, deadline = [], time.monotonic() + timeout
        try:
            while len(out) < expected and time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None:
                    out.append(msg)
        finally:
            c.close()
        return out


def stored(dsn: str, prefix: str) -> dict[str, dict]:
    with connect(dsn) as conn:
        cur = conn.execute("SELECT transaction_id, is_fraud, scenario, labelled_at, source FROM fraud_labels "
                           "WHERE transaction_id LIKE %s", (prefix + "-%",))  # fmt: skip
        return {r[0]: {"is_fraud": r[1], "scenario": r[2], "labelled_at": r[3], "source": r[4]} for r in cur}


def wait_until(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def running(consumer: LabelConsumer):
    """Run the consumer in a thread; on exit, stop it as SIGTERM would and check it closed."""
    stop, errors = threading.Event(), []

    def target():
        try:
            consumer.run(stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="labels-consumer-under-test", daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the consumer did not stop"
    assert not errors, errors


def make_consumer(stack: Settings, t: LabelsTopic, **kwargs) -> LabelConsumer:
    return LabelConsumer(stack, topic=t.topic, dlq_topic=t.dlq, group_id=t.group, backoff=0.2, max_backoff=1.0,
                         progress_interval=2.0, **kwargs)  # fmt: skip


# --- tests -------------------------------------------------------------------------------------------------------
def test_labels_land_once_newest_wins_and_poison_goes_to_dead_letters(stack):
    t = LabelsTopic(stack)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    t.send(*(t.label(n, t0, is_fraud=n % 2 == 0) for n in range(10)))
    t.send(t.label(3, t0, is_fraud=False))  # redelivered by an upstream retry: a duplicate
    t.send(t.label(6, t0 - timedelta(hours=1), is_fraud=False, source="stale"))  # older: ignored
    t.send_raw(b"hello")  # too short for registry framing
    t.send(t.label(99, t0, transaction_id="4111111111111111"))  # valid Avro, a card number where an id belongs
    t.send(*(t.label(n, t0) for n in range(10, 13)))  # the consumer keeps going after poison

    with running(make_consumer(stack, t)) as consumer:
        wait_until(lambda: consumer.stats.dead_lettered == 2 and len(stored(stack.postgres_dsn, t.prefix)) == 13,
                   what="13 labels stored and 2 dead-lettered")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "offsets committed to the end")
        # the redelivery and the stale label changed nothing
        assert (consumer.stats.stored, consumer.stats.duplicates, consumer.stats.dead_lettered) == (13, 2, 2)
        t.send(t.label(4, t0 + timedelta(hours=1), is_fraud=False, source="chargeback"))  # newer: replaces
        wait_until(lambda: stored(stack.postgres_dsn, t.prefix)[t.tx(4)]["source"] == "chargeback", 30,
                   "the newer label for t4 replacing the first")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "offsets committed to the end")
    assert (consumer.stats.stored, consumer.stats.duplicates, consumer.stats.dead_lettered) == (14, 2, 2)
    rows = stored(stack.postgres_dsn, t.prefix)
    assert set(rows) == {t.tx(n) for n in range(13)}
    assert rows[t.tx(3)] == {"is_fraud": False, "scenario": None, "labelled_at": t0, "source": "simulator"}
    assert rows[t.tx(4)] == {"is_fraud": False, "scenario": None, "labelled_at": t0 + timedelta(hours=1),
                             "source": "chargeback"}  # fmt: skip
    assert rows[t.tx(6)] == {"is_fraud": True, "scenario": "card_testing", "labelled_at": t0, "source": "simulator"}

    dead = {m.value(): {k: v.decode() for k, v in m.headers()} for m in t.dead_letters(2)}
    assert len(dead) == 2
    assert dead[b"hello"]["dlq.reason"].startswith("not decodable")
    assert dead[b"hello"]["dlq.source.topic"] == t.topic and dead[b"hello"]["dlq.consumer.group"] == t.group
    (pan,) = [h for v, h in dead.items() if v != b"hello"]
    assert pan["dlq.reason"] == "invalid label: transaction_id looks like a card number"

    # everything delivered again (another group reads the topic from the start): the table does not move
    again = LabelConsumer(stack, topic=t.topic, dlq_topic=t.dlq, group_id=t.group + "-replay")
    with running(again):
        wait_until(lambda: again.stats.duplicates + again.stats.stored == 16, what="the 16 valid labels seen again")
    assert again.stats.stored == 0
    assert stored(stack.postgres_dsn, t.prefix) == rows


def test_database_outage_loses_no_label_and_commits_only_what_is_stored(stack, throwaway_pg):  # noqa: F811
    dsn, pg, admin_dsn = throwaway_pg
    t = LabelsTopic(stack)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    consumer = make_consumer(stack, t, dsn=dsn)
    with running(consumer):
        t.send(*(t.label(n, at) for n in range(10)))
        wait_until(lambda: len(stored(dsn, t.prefix)) == 10, what="the first 10 labels")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "the first batch committed")
        before_outage = t.committed()

        pg.stop()
        t.send(*(t.label(n, at) for n in range(10, 25)))
        t.send(t.label(2, at + timedelta(minutes=1), is_fraud=False, source="chargeback"))  # a correction, too
        wait_until(lambda: consumer.stats.retries >= 3, 30, "the consumer retrying the write")
        assert t.committed() == before_outage  # nothing committed for labels not stored

        pg.start()
        pg.wait_ready(lambda: can_connect(admin_dsn), 60)
        wait_until(lambda: len(stored(dsn, t.prefix)) == 25, 60, "all 25 labels after the outage")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "every offset committed after the outage")
    rows = stored(dsn, t.prefix)
    assert set(rows) == {t.tx(n) for n in range(25)}
    assert (rows[t.tx(2)]["is_fraud"], rows[t.tx(2)]["source"]) == (False, "chargeback")
    assert consumer.stats.stored == 26 and consumer.stats.dead_lettered == 0


def test_the_stacks_labels_consumer_stores_a_label_file_and_reports_its_lag(stack, tmp_path):
    """End to end through `rtfd up`'s component: `rtfd labels load` -> fraud-labels -> labels-consumer -> table."""
    prefix = uuid.uuid4().hex[:10]
    path = tmp_path / "labels.csv"
    path.write_text("transaction_id,is_fraud,scenario\n"
                    f"{prefix}-t1,true,card_testing\n{prefix}-t2,false,\n{prefix}-t3,yes,account_takeover\n")
    summary = load_labels(stack, path)
    assert (summary.sent, summary.rejected, summary.failed) == (3, 0, 0)
    rows = wait_until(lambda: (r := stored(stack.postgres_dsn, prefix)) and len(r) == 3 and r, 60,
                      "the labels-consumer component storing the 3 labels")
    assert {tx: (r["is_fraud"], r["scenario"], r["source"]) for tx, r in rows.items()} == {
        f"{prefix}-t1": (True, "card_testing", "file"),
        f"{prefix}-t2": (False, None, "file"),
        f"{prefix}-t3": (True, "account_takeover", "file"),
    }
    # `rtfd status` lists the component's group; once it caught up, its lag is 0
    lag = wait_until(lambda: [g for g in consumer_lag(stack, [GROUP_ID]) if g["lag"] == 0], 30,
                     "the labels consumer group at lag 0")
    assert lag == [{"group": GROUP_ID, "topic": "fraud-labels", "lag": 0}]


def test_python_m_services_labels_runs_and_stops_on_sigterm(stack):
    t = LabelsTopic(stack)
    at = datetime.now(UTC).replace(microsecond=0)
    t.send(*(t.label(n, at) for n in range(4)))
    env = {**os.environ, "RTFD_STATE_DIR": str(stack.state_dir), "RTFD_PORT_OFFSET": str(stack.port_offset),
           "RTFD_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "RTFD_REGISTRY_URL": stack.registry}
    if stack.pg_dsn is not None:
        env["RTFD_PG_DSN"] = stack.pg_dsn.get_secret_value()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.labels", "--topic", t.topic, "--dlq-topic", t.dlq, "--group", t.group],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until(lambda: len(stored(stack.postgres_dsn, t.prefix)) == 4 or proc.poll() is not None, 60,
                   "the 4 labels")
        wait_until(lambda: t.committed() == t.end_offsets() or proc.poll() is not None, 30, "offsets committed")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "labels: stored 4 (+4), duplicates 0, dead-lettered 0" in output, output


def test_python_m_services_labels_refuses_a_bad_option():
    result = subprocess.run([sys.executable, "-m", "services.labels", "--progress-interval", "0"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "--progress-interval must be positive, got 0.0" in result.stderr


def test_the_dashboard_role_can_read_labels_but_not_write_them(stack):
    tx = f"lbl-role-{uuid.uuid4().hex[:10]}"
    with connect(stack.postgres_dsn) as conn:
        store.upsert_labels(conn, [FraudLabel(tx, True, None, datetime.now(UTC), "analyst")])
    password = secrets.token_urlsafe(16)
    enable_login(stack.postgres_dsn, password)
    with connect(dashboard_dsn(stack.postgres_dsn, password)) as role:
        assert store.get_label(role, tx)["is_fraud"] is True
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            role.execute("UPDATE fraud_labels SET is_fraud = false WHERE transaction_id = %s", (tx,))
