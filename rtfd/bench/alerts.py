"""Produce-to-alert latency: read fraud-alerts as a consumer would and time each bench alert on arrival."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from confluent_kafka import OFFSET_END, Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from rtfd import topology
from rtfd.bench import StoppableThread
from rtfd.config import Settings
from services.kafka_sink import consume_available


def to_ms(value) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"alerts": 0, "p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"alerts": len(ordered), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


class AlertLatencyProbe(StoppableThread):
    def __init__(self, settings: Settings, banks: set[str]):
        super().__init__()
        self.settings = settings
        self.banks = banks
        self.arrivals: list[tuple[int, float]] = []  # (event_time_ms, latency_ms)

    def run(self) -> None:
        consumer = Consumer(self.settings.kafka_consumer_conf(f"rtfd-bench-{uuid.uuid4().hex[:8]}", principal="admin"))
        decode = AvroDeserializer(SchemaRegistryClient(self.settings.registry_conf()))
        ctx = SerializationContext(topology.FRAUD_ALERTS, MessageField.VALUE)

        def from_end(c, partitions):
            for p in partitions:
                p.offset = OFFSET_END
            c.assign(partitions)

        consumer.subscribe([topology.FRAUD_ALERTS], on_assign=from_end)
        try:
            while not self.stopping.is_set():
                for msg in consume_available(consumer, 500, timeout=0.5):
                    now_ms = time.time() * 1000
                    if msg.error() is not None:
                        continue
                    alert = decode(msg.value(), ctx)
                    if alert and alert["bank_id"] in self.banks:
                        event_ms = to_ms(alert["event_time"])
                        self.arrivals.append((event_ms, now_ms - event_ms))
        finally:
            consumer.close()

    def percentiles(self, after_ms: int = 0) -> dict:
        return percentiles([lat for ev, lat in self.arrivals if ev >= after_ms])
