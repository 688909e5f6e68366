"""Kafka's SASL/SCRAM principals and their ACLs on the real session stack (issue #6): who may read and write
what, a wrong password and a plaintext client are refused, and the ACL table itself is least privilege."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from rtfd import topology
from rtfd.config import KAFKA_PRINCIPALS, Settings
from rtfd.stack import kafka

pytestmark = pytest.mark.stack

# a bounded wait for an event the broker sends within a second or two; the pytest timeout is the backstop
EVENT_WAIT_S = 60.0


def consumer_errors(consumer: Consumer, until) -> list[KafkaError]:
    """Poll until `until(errors)` holds (or EVENT_WAIT_S passed); every error event seen, in order."""
    errors: list[KafkaError] = []
    deadline = time.monotonic() + EVENT_WAIT_S
    while time.monotonic() < deadline and not until(errors):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is not None:
            errors.append(msg.error())
    return errors


def delivery_error(settings: Settings, principal: str, topic: str) -> KafkaError | None:
    """Produce one record to `topic` as `principal`; the delivery report's error (None: it was written)."""
    # without idempotence the broker answers the Produce request itself (no producer-id request first)
    producer = Producer(settings.kafka_producer_conf(principal=principal, **{
        "enable.idempotence": False, "acks": "all", "message.timeout.ms": 30000}))
    outcome: list[KafkaError | None] = []
    producer.produce(topic, key=b"acl-test", value=b"not a transaction: dead-lettered by the job",
                     on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(EVENT_WAIT_S)
    assert outcome, f"no delivery report for {principal} -> {topic}"
    return outcome[0]


def test_producer_cannot_read_fraud_alerts(stack: Settings):
    consumer = Consumer(stack.kafka_consumer_conf(f"test-acl-{uuid.uuid4().hex[:8]}", principal="producer"))
    try:
        consumer.subscribe([topology.FRAUD_ALERTS])
        errors = consumer_errors(consumer, lambda seen: bool(seen))
    finally:
        consumer.close()
    assert errors, "the producer principal subscribed to fraud-alerts without any error"
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors[0]


def test_dashboard_and_alerts_principals_may_read_fraud_alerts(stack: Settings):
    """The positive control of the test above: the same read as a principal the issue allows reaches the end
    of every partition without an error."""
    for principal, group in (("dashboard", "rtfd-dashboard-acl-test"), ("alerts", "rtfd-alert-consumer-acl-test")):
        consumer = Consumer(stack.kafka_consumer_conf(f"{group}-{uuid.uuid4().hex[:8]}", principal=principal,
                                                      **{"enable.partition.eof": True}))
        try:
            partitions = consumer.list_topics(topology.FRAUD_ALERTS, timeout=30).topics[topology.FRAUD_ALERTS]
            assert partitions.error is None, partitions.error
            consumer.assign([TopicPartition(topology.FRAUD_ALERTS, p, OFFSET_BEGINNING)
                             for p in partitions.partitions])
            wanted = len(partitions.partitions)
            events = consumer_errors(
                consumer, lambda seen, n=wanted: sum(e.code() == KafkaError._PARTITION_EOF for e in seen) >= n
            )
        finally:
            consumer.close()
        refused = [e for e in events if e.code() != KafkaError._PARTITION_EOF]
        assert not refused, f"{principal}: {refused}"
        assert sum(e.code() == KafkaError._PARTITION_EOF for e in events) >= wanted, f"{principal}: {events}"


def test_producer_may_write_transactions(stack: Settings):
    assert delivery_error(stack, "producer", topology.TRANSACTIONS) is None


@pytest.mark.parametrize(("principal", "topic"), [
    ("dashboard", topology.FRAUD_ALERTS),
    ("alerts", topology.TRANSACTIONS),
    ("producer", topology.FRAUD_ALERTS),
    ("flink", topology.FRAUD_LABELS),
])  # fmt: skip
def test_principals_cannot_write_beyond_their_grants(stack: Settings, principal: str, topic: str):
    err = delivery_error(stack, principal, topic)
    assert err is not None, f"{principal} wrote to {topic}"
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_wrong_password_is_refused(stack: Settings):
    wrong = "not-the-" + uuid.uuid4().hex
    errors: list[KafkaError] = []
    producer = Producer(stack.kafka_client_conf(principal="producer", **{
        "sasl.password": wrong, "error_cb": errors.append}))
    deadline = time.monotonic() + EVENT_WAIT_S
    while time.monotonic() < deadline and not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        producer.poll(0.5)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, f"no authentication error with a wrong password; errors: {errors}"
    assert wrong not in auth[0].str()


def test_plaintext_client_is_refused(stack: Settings):
    """No listener speaks plaintext: a client without SASL never gets metadata."""
    assert stack.kafka_sasl
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "socket.timeout.ms": 5000,
                         "logger": logging.getLogger("test.plaintext")})  # its refusals are expected: not stderr
    with pytest.raises(KafkaException):  # the broker drops the connection at the first non-SASL request
        producer.list_topics(timeout=10)


def test_acl_table_is_least_privilege():
    """The grants say exactly what the issue allows: producers write transactions and labels; the job reads
    transactions and rules and writes alerts and the DLQ; the alert consumer and the dashboard read alerts."""
    by_principal: dict[str, set[tuple[str, str]]] = {}
    for binding in kafka.acl_bindings(kafka.ACLS):
        if binding.restype.name == "TOPIC":
            by_principal.setdefault(binding.principal.removeprefix("User:"), set()).add(
                (binding.operation.name, binding.name))
    reads = {p: {t for op, t in ops if op == "READ"} for p, ops in by_principal.items()}
    writes = {p: {t for op, t in ops if op == "WRITE"} for p, ops in by_principal.items()}
    assert writes["producer"] == {topology.TRANSACTIONS, topology.FRAUD_LABELS} and not reads["producer"]
    assert reads["flink"] == {topology.TRANSACTIONS, topology.FRAUD_RULES}
    assert writes["flink"] == {topology.FRAUD_ALERTS, topology.TRANSACTIONS_DLQ}
    assert reads["alerts"] == {topology.FRAUD_ALERTS} and writes["alerts"] == {topology.FRAUD_ALERTS_DLQ}
    assert reads["labels"] == {topology.FRAUD_LABELS} and writes["labels"] == {topology.FRAUD_LABELS_DLQ}
    assert reads["dashboard"] == {topology.FRAUD_ALERTS} and not writes["dashboard"]
    assert "admin" not in by_principal  # the super user needs no ACLs
    assert set(by_principal) == set(KAFKA_PRINCIPALS) - {"admin"}
    every = {b.operation.name for b in kafka.acl_bindings(kafka.ACLS)}
    assert every <= {"READ", "WRITE", "DESCRIBE"}, every  # no ALL, CREATE, DELETE or ALTER for a service


def test_native_nodes_listen_with_sasl_only_and_keep_their_config_private(stack: Settings):
    files = sorted((stack.state_dir / "kafka").glob("*/server.properties"))
    assert len(files) == 4, files  # the controller and three brokers
    for path in files:
        props = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        protocols = dict(p.split(":", 1) for p in props["listener.security.protocol.map"].split(","))
        assert set(protocols.values()) == {"SASL_PLAINTEXT"}, (path, protocols)
        assert {listener.split("://")[0] for listener in props["listeners"].split(",")} <= set(protocols)
        assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        assert props["super.users"] == "User:admin"
        assert path.stat().st_mode & 0o077 == 0, f"{path} (it holds the admin password) is readable by others"


def test_clients_follow_the_state_folders_kafka_and_bad_passwords_are_named_not_shown(tmp_path):
    """A new state folder is secure; one formatted before SASL stays plaintext (until purged); Kafka elsewhere
    is secure; RTFD_KAFKA_SECURE decides when given. A malformed password is refused without echoing it."""
    assert Settings(_env_file=None, state_dir=tmp_path).kafka_sasl
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster_id").write_text("an-old-cluster")
    assert not Settings(_env_file=None, state_dir=tmp_path).kafka_sasl
    assert Settings(_env_file=None, state_dir=tmp_path, bootstrap_servers="kafka-1:19092").kafka_sasl
    (tmp_path / "kafka" / "security").write_text("sasl-scram")
    assert Settings(_env_file=None, state_dir=tmp_path).kafka_sasl
    assert not Settings(_env_file=None, state_dir=tmp_path, kafka_secure=False).kafka_sasl
    assert "sasl.password" not in Settings(_env_file=None, state_dir=tmp_path, kafka_secure=False) \
        .kafka_client_conf(principal="producer")
    with pytest.raises(ValueError, match="unknown Kafka principal 'nobody'"):
        Settings(_env_file=None, state_dir=tmp_path).kafka_client_conf(principal="nobody")
    bad = 'pw"with,quote'
    with pytest.raises(ValueError, match="RTFD_KAFKA_PRODUCER_PASSWORD must be") as refused:
        Settings(_env_file=None, state_dir=tmp_path, kafka_producer_password=bad).kafka_password("producer")
    assert bad not in str(refused.value)
    with pytest.raises(ValueError, match="RTFD_KAFKA_FLINK_PASSWORD is not set"):
        Settings(_env_file=None, state_dir=tmp_path, bootstrap_servers="kafka-1:19092").kafka_password("flink")
