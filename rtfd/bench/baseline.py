"""The raw baseline: Kafka produce + consume of same-size records, no Avro, no registry, no Flink.

It tells how much of the machine the pipeline leaves on the table: pipeline rate / baseline rate.
"""

from __future__ import annotations

import os
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from rtfd.config import Settings
from rtfd.stack import kafka
from services.kafka_sink import consume_available


def run_baseline(settings: Settings, records: int, size: int, partitions: int = 6) -> dict:
    """Produce `records` random payloads of `size` bytes (acks=all, idempotent, like the banks) to a fresh
    topic, consume them all back, and report both rates; the topic is deleted afterwards."""
    admin = kafka.admin(settings)
    brokers = len(admin.list_topics(timeout=10).brokers)
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    replication = min(3, brokers)
    admin.create_topics(
        [NewTopic(topic, partitions, replication, config={"min.insync.replicas": str(min(2, replication))})]
    )[topic].result(30)
    payloads = [os.urandom(size) for _ in range(1024)]
    keys = [uuid.uuid4().hex.encode() for _ in range(4096)]
    try:
        producer = Producer(settings.kafka_producer_conf(principal="admin"))
        started = time.perf_counter()
        for i in range(records):
            while True:
                try:
                    producer.produce(topic, key=keys[i % len(keys)], value=payloads[i % len(payloads)])
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
        undelivered = producer.flush(120)
        produce_s = time.perf_counter() - started

        consumer = Consumer(settings.kafka_consumer_conf(f"bench-baseline-{uuid.uuid4().hex[:8]}", principal="admin"))
        consumer.subscribe([topic])
        consumed, first, deadline = 0, None, time.monotonic() + 300
        try:
            while consumed < records - undelivered and time.monotonic() < deadline:
                for msg in consume_available(consumer, 1000, timeout=1.0):
                    if msg.error() is None:
                        first = first or time.perf_counter()
                        consumed += 1
        finally:
            consumer.close()
        consume_s = time.perf_counter() - (first or time.perf_counter())
    finally:
        admin.delete_topics([topic])
    return {
        "records": records,
        "record_bytes": size,
        "produced_per_s": round(records / produce_s),
        "consumed_per_s": round(consumed / consume_s) if consume_s > 0 else None,
        "end_to_end_per_s": round(consumed / (produce_s + consume_s)),
        "undelivered": undelivered,
        "consumed": consumed,
    }


def transaction_record_bytes(samples: int = 200) -> int:
    """Mean size on the wire of a simulated v2 transaction: Avro body + the 5-byte Confluent header."""
    import io

    import fastavro

    import schemas
    from services.producer.simulator import Simulator

    schema = fastavro.parse_schema(schemas.schema_dict("transaction-v2.avsc"))
    sim = Simulator("bench-size", b"size-probe-key", seed=1)
    total = 0
    for _ in range(samples):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, sim.next_event().record)
        total += len(buf.getvalue()) + 5
    return round(total / samples)
