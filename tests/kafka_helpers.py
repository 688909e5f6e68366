"""Kafka helpers shared by integration tests: a fresh topic, and read a topic back decoded."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from rtfd.config import Settings


def create_topic(settings: Settings, name: str, partitions: int = 6) -> str:
    admin = AdminClient(settings.kafka_client_conf(principal="admin"))
    replication = min(3, len(admin.list_topics(timeout=15).brokers))  # a one-broker dev cluster works too
    admin.create_topics([NewTopic(name, partitions, replication)])[name].result(30)
    return name


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 60.0) -> list[tuple[str, dict]]:
    """(key, value) of every message, polling until `expected` arrived, then a little longer for extras."""
    consumer = Consumer(settings.kafka_consumer_conf(f"test-{uuid.uuid4().hex[:8]}", principal="admin"))
    values = AvroDeserializer(SchemaRegistryClient(settings.registry_conf()))
    out: list[tuple[str, dict]] = []
    consumer.subscribe([topic])
    try:
        deadline, quiet_until = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                if quiet_until and time.monotonic() > quiet_until:
                    break
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.key().decode(), values(msg.value(), SerializationContext(topic, MessageField.VALUE))))
            if len(out) >= expected and quiet_until is None:
                quiet_until = time.monotonic() + 2.0
    finally:
        consumer.close()
    return out
