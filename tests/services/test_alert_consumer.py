"""The alert consumer against real Kafka, registry and PostgreSQL: once per alert, dead letters, outages, webhook.

Each test has its own alerts topic, dead-letter topic, consumer group and alert ids, so tests are isolated
from each other and from the stack's own `fraud-alerts`.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from rtfd import topology
from rtfd.config import Settings
from rtfd.stack.postgres import PrivatePostgres, can_connect, migrate
from rtfd.stack.process import port_open
from services.alerts import store
from services.alerts.config import AlertSettings
from services.alerts.consumer import AlertConsumer
from services.alerts.webhook import WebhookNotifier
from services.producer.sender import avro_serializer
from tests.kafka_helpers import create_topic

pytestmark = pytest.mark.stack

# a second PostgreSQL the test may stop, beside the stack's (offsets 0/100): port 5433 + 700..799, first free
THROWAWAY_PG_PORT_OFFSETS = range(700, 800)


# --- helpers ----------------------------------------------------------------------------------------------------
def alert(prefix: str, n: int, **overrides) -> dict:
    now = datetime.now(UTC)
    rec = {
        "alert_id": f"{prefix}-a{n}", "transaction_id": f"{prefix}-t{n}", "card_token": f"card-{n % 4}",
        "customer_id": f"cust-{n}", "bank_id": "bank-t", "rules": ["velocity@v1"], "score": 0.9,
        "severity": "CRITICAL", "reasons": ["6 transactions in 60 s"], "amount_minor": 1000 + n,
        "currency": "EUR", "event_time": now - timedelta(seconds=2), "detected_at": now,
    }  # fmt: skip
    rec.update(overrides)
    return rec


class AlertsTopic:
    """A fresh alerts topic, its dead-letter topic, a group, and a producer writing Avro alerts or raw bytes."""

    def __init__(self, stack: Settings, partitions: int = 3):
        self.stack = stack
        self.prefix = uuid.uuid4().hex[:10]
        self.topic = create_topic(stack, f"test-alerts-{self.prefix}", partitions)
        self.dlq = f"test-alerts-{self.prefix}-dlq"  # created by the consumer, as fraud-alerts-dlq would be
        self.group = f"test-alert-consumer-{self.prefix}"
        self.producer = Producer(stack.kafka_producer_conf(principal="admin"))
        self.serialize = avro_serializer(SchemaRegistryClient(stack.registry_conf()), schemas.fraud_alert_schema())

    def send(self, *records: dict) -> None:
        for rec in records:
            value = self.serialize(rec, SerializationContext(self.topic, MessageField.VALUE))
            self.producer.produce(self.topic, key=rec["card_token"].encode(), value=value)
        assert self.producer.flush(30) == 0

    def send_raw(self, value: bytes | None, key: bytes = b"poison", headers=None) -> None:
        self.producer.produce(self.topic, key=key, value=value, headers=headers)
        assert self.producer.flush(30) == 0

    def ids(self, *ns: int) -> set[str]:
        return {f"{self.prefix}-a{n}" for n in ns}

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
            parts = self.end_offsets()
            tps = c.committed([TopicPartition(self.topic, p) for p in parts], timeout=10)
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
    with store.connect(dsn) as conn:
        cur = conn.execute("SELECT alert_id, status, kafka_partition, kafka_offset FROM alerts "
                           "WHERE alert_id LIKE %s", (prefix + "-%",))
        return {r[0]: {"status": r[1], "partition": r[2], "offset": r[3]} for r in cur.fetchall()}


def wait_until(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def running(consumer: AlertConsumer):
    """Run the consumer in a thread; on exit, stop it as SIGTERM would and check it closed."""
    stop, errors = threading.Event(), []

    def target():
        try:
            consumer.run(stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="alert-consumer-under-test", daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the consumer did not stop"
    assert not errors, errors


def make_consumer(stack: Settings, t: AlertsTopic, **kwargs) -> AlertConsumer:
    return AlertConsumer(stack, topic=t.topic, dlq_topic=t.dlq, group_id=t.group, backoff=0.2, max_backoff=1.0,
                         progress_interval=2.0, **kwargs)


# --- tests -------------------------------------------------------------------------------------------------------
def test_each_alert_once_poison_to_dead_letters_and_triage_survives_redelivery(stack):
    t = AlertsTopic(stack)
    t.send(*(alert(t.prefix, n) for n in range(10)))
    t.send(alert(t.prefix, 3))  # redelivered by an upstream retry
    t.send_raw(b"hello", headers=[("origin", b"fuzzer")])  # too short for registry framing
    t.send_raw(b"\x00\x00\x0f\x42\x40" + b"\x02" * 40)  # framing of a schema id the registry does not know
    t.send(alert(t.prefix, 99, alert_id=""))  # valid Avro, invalid alert
    t.send(*(alert(t.prefix, n) for n in range(10, 15)))  # the consumer keeps going after poison

    with running(make_consumer(stack, t)) as consumer:
        wait_until(lambda: consumer.stats.dead_lettered == 3 and len(stored(stack.postgres_dsn, t.prefix)) == 15,
                   what="15 alerts stored and 3 dead-lettered")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "offsets committed to the end")
    assert (consumer.stats.stored, consumer.stats.duplicates, consumer.stats.dead_lettered) == (15, 1, 3)
    rows = stored(stack.postgres_dsn, t.prefix)
    assert set(rows) == t.ids(*range(15))
    assert all(r["partition"] is not None and r["offset"] is not None for r in rows.values())

    dead = t.dead_letters(3)
    assert len(dead) == 3
    by_value = {m.value(): dict(m.headers()) for m in dead}
    hello = {k: v.decode() for k, v in by_value[b"hello"].items()}
    assert hello["origin"] == "fuzzer" and hello["dlq.source.topic"] == t.topic
    assert hello["dlq.reason"].startswith("not decodable") and hello["dlq.consumer.group"] == t.group
    assert int(hello["dlq.source.offset"]) >= 0 and 0 <= int(hello["dlq.source.partition"]) < 3
    unknown = {k: v.decode() for k, v in by_value[b"\x00\x00\x0f\x42\x40" + b"\x02" * 40].items()}
    assert "schema registry" in unknown["dlq.reason"]
    reasons = sorted(dict(m.headers())["dlq.reason"].decode() for m in dead)
    assert any(r == "invalid alert: missing or empty alert_id" for r in reasons), reasons

    # an analyst triages; then everything is delivered again (another group reads the topic from the start)
    with store.connect(stack.postgres_dsn) as conn:
        store.resolve(conn, f"{t.prefix}-a4", "fraud", note="confirmed by phone")
    again = AlertConsumer(stack, topic=t.topic, dlq_topic=t.dlq, group_id=t.group + "-replay")
    with running(again):
        wait_until(lambda: again.stats.duplicates == 16, what="the redelivered alerts seen as duplicates")
    assert again.stats.stored == 0
    assert stored(stack.postgres_dsn, t.prefix)[f"{t.prefix}-a4"]["status"] == "confirmed_fraud"


@pytest.fixture
def throwaway_pg():
    """A private PostgreSQL cluster of its own (migrated), which the test may stop and start again."""
    state = Path(tempfile.mkdtemp(prefix="rtfd-alerts-pg-", dir="/tmp"))
    state.chmod(0o755)  # as root, PostgreSQL runs as an unprivileged user that must reach its folder
    offset = next(o for o in THROWAWAY_PG_PORT_OFFSETS if not port_open(topology.POSTGRES_PORT + o))
    settings = Settings(state_dir=state, port_offset=offset)
    pg = PrivatePostgres(settings)
    proc = pg.process()
    admin_dsn = settings.postgres_dsn.rsplit("/", 1)[0] + "/postgres"
    try:
        pg.initialise()
        proc.start()
        proc.wait_ready(lambda: can_connect(admin_dsn), 60)
        pg.create_database()
        migrate(settings.postgres_dsn)
        yield settings.postgres_dsn, proc, admin_dsn
    finally:
        proc.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_database_outage_loses_nothing_and_commits_only_what_is_stored(stack, throwaway_pg):
    dsn, pg, admin_dsn = throwaway_pg
    t = AlertsTopic(stack)
    consumer = make_consumer(stack, t, dsn=dsn)
    with running(consumer):
        t.send(*(alert(t.prefix, n) for n in range(20)))
        wait_until(lambda: len(stored(dsn, t.prefix)) == 20, what="the first 20 alerts")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "the first batch committed")
        before_outage = t.committed()

        pg.stop()
        t.send(*(alert(t.prefix, n) for n in range(20, 50)))
        t.send(*(alert(t.prefix, n) for n in range(45, 50)))  # duplicates arrive during the outage too
        wait_until(lambda: consumer.stats.retries >= 3, 30, "the consumer retrying the write")
        assert t.committed() == before_outage  # nothing committed for alerts not stored

        pg.start()
        pg.wait_ready(lambda: can_connect(admin_dsn), 60)
        wait_until(lambda: len(stored(dsn, t.prefix)) == 50, 60, "all 50 alerts after the outage")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "every offset committed after the outage")
    assert set(stored(dsn, t.prefix)) == t.ids(*range(50))
    assert consumer.stats.stored == 50 and consumer.stats.duplicates == 5


class Webhook:
    """A local HTTP endpoint: the first `fail_first` requests get a 500 (or every one, with fail_first=-1)."""

    def __init__(self, fail_first: int = 0):
        self.fail_first, self.requests, self.received = fail_first, 0, []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.requests += 1
                fail = hook.fail_first < 0 or hook.requests <= hook.fail_first
                if not fail:
                    hook.received.append((self.headers["X-RTFD-Alert-Id"], body))
                self.send_response(500 if fail else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def notifications(dsn: str, prefix: str) -> dict[str, tuple]:
    with store.connect(dsn) as conn:
        cur = conn.execute("SELECT alert_id, attempts, delivered_at IS NOT NULL, next_attempt_at IS NULL, last_error "
                           "FROM alert_notifications WHERE alert_id LIKE %s", (prefix + "-%",))
        return {r[0]: r[1:] for r in cur.fetchall()}


def test_webhook_retries_until_delivered(stack):
    t, hook = AlertsTopic(stack), Webhook(fail_first=3)
    notifier = WebhookNotifier(hook.url, stack.postgres_dsn, timeout=2, backoff=0.2, max_backoff=0.5,
                               sweep_interval=0.3)
    try:
        with running(make_consumer(stack, t, webhook=notifier)):
            t.send(*(alert(t.prefix, n) for n in range(5)))
            wait_until(lambda: {i for i, _ in hook.received} == t.ids(*range(5)), 30, "5 alerts delivered")
            wait_until(lambda: all(n[1] for n in notifications(stack.postgres_dsn, t.prefix).values()), 10,
                       "deliveries booked")
    finally:
        hook.close()
    booked = notifications(stack.postgres_dsn, t.prefix)
    assert len(booked) == 5 and sum(n[0] for n in booked.values()) == 5 + 3  # three failed attempts retried
    assert any(n[3] == "HTTP 500" for n in booked.values())
    body = dict(hook.received)[f"{t.prefix}-a2"]
    assert body["transaction_id"] == f"{t.prefix}-t2" and body["severity"] == "CRITICAL"
    status = store.webhook_status(stack.postgres_dsn)
    assert status["available"] and status["delivered"] >= 5


def test_a_failing_webhook_never_holds_up_consumption(stack):
    t, hook = AlertsTopic(stack), Webhook(fail_first=-1)
    # a queue of 2 overflows at once: the rest wait in the outbox for the sweep, then give up after 2 attempts
    notifier = WebhookNotifier(hook.url, stack.postgres_dsn, timeout=2, max_attempts=2, backoff=0.2,
                               queue_size=2, sweep_interval=0.3, first_attempt_grace=1.0)
    try:
        with running(make_consumer(stack, t, webhook=notifier)) as consumer:
            t.send(*(alert(t.prefix, n) for n in range(30)))
            wait_until(lambda: len(stored(stack.postgres_dsn, t.prefix)) == 30, 30, "all 30 alerts stored")
            wait_until(lambda: t.committed() == t.end_offsets(), 30, "offsets committed")
            assert consumer.stats.stored == 30
            given_up = wait_until(
                lambda: (n := notifications(stack.postgres_dsn, t.prefix)) and len(n) == 30
                and all(a == 2 and not delivered and done for a, delivered, done, _ in n.values()),
                30, "every notification tried twice, then given up")
            assert given_up
    finally:
        hook.close()
    assert notifier.stats.deferred > 0 and notifier.stats.given_up == 30
    status = store.webhook_status(stack.postgres_dsn)
    assert status["given_up"] >= 30 and status["last_error"]["error"] == "HTTP 500"


def test_registry_outage_is_retried_not_dead_lettered(stack):
    t = AlertsTopic(stack)
    t.send(*(alert(t.prefix, n) for n in range(3)))
    blind = make_consumer(Settings(**{**stack.model_dump(), "registry_url": "http://127.0.0.1:9"}), t)  # no one there
    with running(blind):
        wait_until(lambda: blind.stats.retries >= 2, 60, "retries while the registry is unreachable")
    # stopped mid-retry: the batch was neither stored, dead-lettered nor committed
    assert (blind.stats.stored, blind.stats.dead_lettered) == (0, 0)
    assert sum(t.committed().values()) == 0 and stored(stack.postgres_dsn, t.prefix) == {}

    with running(make_consumer(stack, t)) as consumer:  # the same group, the registry back
        wait_until(lambda: len(stored(stack.postgres_dsn, t.prefix)) == 3, what="the 3 alerts")
        wait_until(lambda: t.committed() == t.end_offsets(), 30, "offsets committed")
    assert consumer.stats.dead_lettered == 0


def test_python_m_services_alerts_runs_and_stops_on_sigterm(stack):
    t = AlertsTopic(stack)
    t.send(*(alert(t.prefix, n) for n in range(4)))
    env = {**os.environ, "RTFD_STATE_DIR": str(stack.state_dir), "RTFD_PORT_OFFSET": str(stack.port_offset),
           "RTFD_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "RTFD_REGISTRY_URL": stack.registry}
    if stack.pg_dsn is not None:
        env["RTFD_PG_DSN"] = stack.pg_dsn.get_secret_value()
    env.pop("RTFD_ALERT_WEBHOOK_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.alerts", "--topic", t.topic, "--dlq-topic", t.dlq, "--group", t.group],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until(lambda: len(stored(stack.postgres_dsn, t.prefix)) == 4 or proc.poll() is not None, 60,
                   "the 4 alerts")
        wait_until(lambda: t.committed() == t.end_offsets() or proc.poll() is not None, 30, "offsets committed")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "alerts: stored 4 (+4), duplicates 0, dead-lettered 0" in output, output


def test_webhook_is_configured_by_environment(monkeypatch):
    monkeypatch.delenv("RTFD_ALERT_WEBHOOK_URL", raising=False)
    assert WebhookNotifier.from_settings(AlertSettings(_env_file=None), "postgresql://x/y") is None
    monkeypatch.setenv("RTFD_ALERT_WEBHOOK_URL", "https://hooks.example/T0K3N")
    monkeypatch.setenv("RTFD_ALERT_WEBHOOK_MAX_ATTEMPTS", "3")
    settings = AlertSettings(_env_file=None)
    assert "T0K3N" not in repr(settings)  # a secret: never printed
    notifier = WebhookNotifier.from_settings(settings, "postgresql://x/y")
    assert (notifier.url, notifier.max_attempts) == ("https://hooks.example/T0K3N", 3)
