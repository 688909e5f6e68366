"""Kafka plumbing shared by the producer and the replay: Avro serializers, delivery counting, pacing.

Follows confluent-kafka's own examples: `poll(0)` after each produce so delivery callbacks run, a `BufferError`
means the local queue is full (poll and retry), and `flush()` before exit decides what was really delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from rtfd.config import Settings

log = logging.getLogger(__name__)


def avro_serializer(client: SchemaRegistryClient, schema_str: str) -> AvroSerializer:
    # Registering is idempotent: an already registered schema (as `rtfd up` registers them) just returns
    # its id, and a fresh topic (the tests') gets its subject. The producer writes exactly the version asked.
    return AvroSerializer(client, schema_str, conf={"auto.register.schemas": True})


@dataclass
class Deliveries:
    """Counts delivery reports; remembers delivered ids when asked (tests and benchmarks need them)."""

    keep_ids: bool = True
    on_delivered: Callable[[str], None] | None = None
    delivered: int = 0
    failed: int = 0
    ids: list[str] = field(default_factory=list)

    def callback(self, record_id: str, what: str = "message") -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failed += 1
                # only the record id and the error: the payload is never logged
                log.error("delivery of %s %s failed: %s", what, record_id, err)
                return
            self.delivered += 1
            if self.keep_ids:
                self.ids.append(record_id)
            if self.on_delivered is not None:
                self.on_delivered(record_id)

        return report


class AvroSender:
    """One producer writing Avro values with string keys to topics; counts deliveries per topic."""

    def __init__(self, settings: Settings, registry: SchemaRegistryClient | None = None, **producer_conf):
        self.producer = Producer(settings.kafka_producer_conf(principal="producer", **producer_conf))
        self.registry = registry or SchemaRegistryClient(settings.registry_conf())
        self._keys = StringSerializer("utf_8")

    def send(self, topic: str, serializer: AvroSerializer, key: str, value: dict,
             on_delivery: Callable[[KafkaError | None, Message], None], timestamp_ms: int | None = None) -> None:
        """Produce one record. `timestamp_ms` sets the Kafka record timestamp: for transactions it is the
        event_time (Kafka's CreateTime convention), which the Flink job uses for event-time watermarks."""
        payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
        key_bytes = self._keys(key, SerializationContext(topic, MessageField.KEY))
        extra = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        while True:
            try:
                self.producer.produce(topic, key=key_bytes, value=payload, on_delivery=on_delivery, **extra)
                break
            except BufferError:
                # the local queue is full: let librdkafka deliver some, then retry
                self.producer.poll(0.1)
        self.producer.poll(0)

    def poll(self, timeout: float = 0) -> None:
        self.producer.poll(timeout)

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered after the timeout."""
        return self.producer.flush(timeout)


class Pacer:
    """Token-bucket pacing: how many messages may go now to stay at `rate` per second on average.

    The caller sends a batch and sleeps until the next batch is due, instead of sleeping per message
    (time.sleep is far too coarse and slow for hundreds of messages per second)."""

    MIN_WAIT_S = 0.005

    def __init__(self, rate: float | None, burst_s: float = 0.1):
        self.rate = rate if rate and rate > 0 else None
        self.burst = max(1, int((self.rate or 0) * burst_s))
        self.start = time.monotonic()
        self.sent = 0

    def allowance(self, cap: int = 10_000) -> int:
        """Messages that may go now. At most one burst per call: after a stall the backlog is caught up
        in bursts between polls, keeping the average rate without one huge spike."""
        if self.rate is None:
            return cap
        due = int((time.monotonic() - self.start) * self.rate) - self.sent
        return max(0, min(due, self.burst, cap))

    def took(self, n: int) -> None:
        self.sent += n

    def wait(self, max_s: float = 0.05) -> float:
        """Seconds to idle before the next batch: until the next message is due, but at least MIN_WAIT_S
        (and at most `max_s`, so the caller keeps polling and checking signals). librdkafka's poll counts
        whole milliseconds: above 1,000/s a producer waited "0.0009 s", poll returned at once, and the loop
        spun one message at a time on 80 % of a core (py-spy, session 10). A few ms let a few messages
        gather into one batch; each still takes its event time when it is made."""
        if self.rate is None:
            return 0.0
        ahead = (self.sent + 1) / self.rate - (time.monotonic() - self.start)
        return 0.0 if ahead <= 0 else min(max(ahead, self.MIN_WAIT_S), max_s)
