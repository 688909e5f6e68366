"""The native stack itself: idempotent up, clean down, and no loss when a broker stops mid-produce."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from rtfd import topology
from rtfd.config import Settings
from rtfd.stack import NativeStack, kafka
from rtfd.stack.process import port_open


def processes_under(state: Path) -> list[psutil.Process]:
    """Every live process whose command line mentions the state folder."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(state) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_session_stack_is_healthy(stack: Settings):
    native = NativeStack(stack)
    report = native.status()
    assert {c["name"]: c["state"] for c in report["components"]} == {
        "postgres": "up", "kafka-controller": "up", "kafka-1": "up", "kafka-2": "up", "kafka-3": "up",
        "registry": "up", "flink-jobmanager": "up", "flink-taskmanager": "up", "alert-consumer": "up",
        "labels-consumer": "up", "dashboard": "up", "dagster-webserver": "up", "dagster-daemon": "up",
        "supervisor": "up",
    }  # fmt: skip
    topics = {t["topic"]: t for t in report["topics"]}
    for spec in topology.TOPICS:
        assert topics[spec.name]["partitions"] == spec.partitions
        assert topics[spec.name]["replication"] == 3
    assert topics[topology.TRANSACTIONS]["min_insync_replicas"] == "2"
    assert topics[topology.FRAUD_RULES]["cleanup_policy"] == "compact"
    assert report["rows"]["transactions"] is not None


def test_up_twice_is_a_noop_and_down_leaves_nothing():
    state = Path(tempfile.mkdtemp(prefix="rtfd-lifecycle-"))
    state.chmod(0o755)
    settings = Settings(state_dir=state, port_offset=200)
    native = NativeStack(settings)
    try:
        native.up(brokers=1, banks=(), flink=False)  # Flink's own lifecycle: tests/stack/test_flink_cluster.py
        pids = {p.name: p.pid for p in native.all_known()}
        assert all(pids.values()), pids
        before = {p.pid for p in processes_under(state)}

        messages: list[str] = []
        NativeStack(settings, progress=messages.append).up(brokers=1, banks=(), flink=False)
        assert {p.name: p.pid for p in native.all_known()} == pids
        # nothing new but what running components spawn by themselves (Dagster's daemon starts code servers)
        new = {p.pid for p in processes_under(state)} - before
        spawned = {c.pid for pid in pids.values() for c in psutil.Process(pid).children(recursive=True)}
        assert not {pid for pid in new - spawned if psutil.pid_exists(pid)}
        assert [m for m in messages if ": started (" in m] == []
        assert sum("already running" in m for m in messages) == len(pids)

        native.down()
        assert processes_under(state) == []
        assert not any(port_open(settings.port(p)) for p in (topology.BROKER_PORTS[0], topology.REGISTRY_PORT))
    finally:
        native.down()
        shutil.rmtree(state, ignore_errors=True)


def test_stopping_a_broker_mid_produce_loses_nothing(stack: Settings):
    topic = f"test-broker-stop-{uuid.uuid4().hex[:8]}"
    admin = kafka.admin(stack)
    admin.create_topics([NewTopic(topic, 6, 3, config={"min.insync.replicas": "2"})])[topic].result(30)

    producer = Producer(stack.kafka_producer_conf(principal="producer", **{"delivery.timeout.ms": 120000}))
    delivered: list[str] = []
    failed: list[str] = []

    def on_delivery(err, msg):
        (failed if err else delivered).append(msg.value().decode())

    broker = NativeStack(stack).component("kafka-2")
    stopper = threading.Timer(1.5, broker.stop)
    stopper.start()
    sent = []
    try:
        for i in range(6000):
            value = f"id-{i}"
            producer.produce(topic, key=str(i % 97), value=value, on_delivery=on_delivery)
            sent.append(value)
            producer.poll(0)
            if i % 500 == 0:
                time.sleep(0.2)  # spread the load over the broker's shutdown
        assert producer.flush(120) == 0
    finally:
        stopper.join()
    # the supervisor brings the stopped broker back
    deadline = time.monotonic() + 90
    while not (broker.is_running() and port_open(broker.port)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert broker.is_running() and port_open(broker.port), broker.tail()

    assert failed == []
    assert sorted(delivered) == sorted(sent)

    consumer = Consumer(stack.kafka_consumer_conf(f"test-{uuid.uuid4().hex[:8]}", principal="admin"))
    consumer.subscribe([topic])
    consumed: set[str] = set()
    deadline = time.monotonic() + 60
    try:
        while len(consumed) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                consumed.add(msg.value().decode())
    finally:
        consumer.close()
    assert consumed == set(sent)
