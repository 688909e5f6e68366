"""The alert consumer: `fraud-alerts` (Avro) -> PostgreSQL `alerts`, each alert once, offsets after the commit.

The loop (batches, dead letters, retries while PostgreSQL or the registry is away, commit after the write,
SIGTERM) is services/kafka_sink.py's. What is the alerts' own: a decoded record must pass Alert.from_record or
it is dead-lettered; alerts are stored with ON CONFLICT (alert_id) DO NOTHING, so a redelivery is a no-op and
never resets triage state; each newly stored alert is handed to the optional webhook.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from confluent_kafka import Message

from rtfd.config import Settings
from services.alerts import ALERTS_TOPIC, DLQ_TOPIC, GROUP_ID, store
from services.alerts.alert import Alert, InvalidAlert
from services.alerts.webhook import WebhookNotifier
from services.kafka_sink import BATCH_SIZE, DB_TIMEOUTS, AvroSink, ConsumerStats, Poison, ensure_topic

__all__ = ["DB_TIMEOUTS", "AlertConsumer", "ConsumerStats", "Poison", "ensure_topic"]


class AlertConsumer(AvroSink[Alert]):
    """Consume `topic` as consumer group `group_id` into the `alerts` table of `dsn` (default: the stack's)."""

    kind = "alerts"
    table = "PostgreSQL alerts"
    principal = "alerts"

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str | None = None,
        topic: str = ALERTS_TOPIC,
        dlq_topic: str = DLQ_TOPIC,
        group_id: str = GROUP_ID,
        webhook: WebhookNotifier | None = None,
        batch_size: int = BATCH_SIZE,
        progress_interval: float = 10.0,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        consumer_conf: dict | None = None,
    ):
        super().__init__(settings, topic=topic, dlq_topic=dlq_topic, group_id=group_id, dsn=dsn,
                         batch_size=batch_size, progress_interval=progress_interval, backoff=backoff,
                         max_backoff=max_backoff, consumer_conf=consumer_conf)  # fmt: skip
        self.webhook = webhook

    def parse(self, record: object, msg: Message) -> Alert:
        try:
            return Alert.from_record(record, msg.partition(), msg.offset())
        except InvalidAlert as exc:
            raise Poison(f"invalid alert: {exc}") from exc

    def write(self, conn: psycopg.Connection, records: Sequence[Alert]) -> list[str]:
        # the webhook's outbox row goes in the same transaction as the alert, so no new alert is ever unnotified
        notify_after = self.webhook.first_attempt_grace if self.webhook is not None else None
        return store.insert_new_alerts(conn, records, notify_after)

    def on_start(self) -> None:
        if self.webhook is not None:
            self.webhook.start()

    def on_close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()

    def on_written(self, records: Sequence[Alert], changed: list[str]) -> None:
        if self.webhook is not None and changed:
            fresh = set(changed)
            self.webhook.submit([a for a in records if a.alert_id in fresh])

    def progress_detail(self) -> str:
        if self.webhook is None:
            return ""
        w = self.webhook.stats
        return f", webhook delivered {w.delivered} failed attempts {w.failed_attempts} gave up {w.given_up}"
