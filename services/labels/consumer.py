"""The labels consumer: `fraud-labels` (Avro) -> PostgreSQL `fraud_labels`, offsets after the commit.

The loop (batches, dead letters to `fraud-labels-dlq`, retries while PostgreSQL or the registry is away, commit
after the write, SIGTERM) is services/kafka_sink.py's. What is the labels' own: a decoded record must pass
FraudLabel.from_record or it is dead-lettered, and a label replaces a stored one only when it is not older, so
redeliveries and late stale labels change nothing (store.upsert_labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from confluent_kafka import Message

from rtfd.config import Settings
from services.kafka_sink import AvroSink, Poison
from services.labels import DLQ_TOPIC, GROUP_ID, LABELS_TOPIC, store
from services.labels.label import FraudLabel, InvalidLabel


class LabelConsumer(AvroSink[FraudLabel]):
    """Consume `topic` as consumer group `group_id` into the `fraud_labels` table of `dsn` (default: the stack's)."""

    kind = "labels"
    table = "PostgreSQL fraud_labels"
    principal = "labels"

    def __init__(self, settings: Settings, *, topic: str = LABELS_TOPIC, dlq_topic: str = DLQ_TOPIC,
                 group_id: str = GROUP_ID, **kwargs):  # fmt: skip
        super().__init__(settings, topic=topic, dlq_topic=dlq_topic, group_id=group_id, **kwargs)

    def parse(self, record: object, msg: Message) -> FraudLabel:
        try:
            return FraudLabel.from_record(record)
        except InvalidLabel as exc:
            raise Poison(f"invalid label: {exc}") from exc

    def write(self, conn: psycopg.Connection, records: Sequence[FraudLabel]) -> list[str]:
        return store.upsert_labels(conn, records)
