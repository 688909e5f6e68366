"""The bank producer: simulated transactions to Kafka at a steady rate, fraud labels after a delay.

`run_producer` is the library entry point (the `produce` command and the tests call it). Labels go out
`label_delay` seconds after their transaction, as chargebacks arrive late; whatever is still waiting when the
run ends is published at once rather than dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from rtfd import topology
from rtfd.config import Settings
from services.producer.sender import AvroSender, Deliveries, Pacer, avro_serializer
from services.producer.simulator import Simulator

log = logging.getLogger(__name__)


@dataclass
class ProduceReport:
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    fraud: int = 0
    labels: int = 0  # labels delivered
    labels_failed: int = 0
    undelivered: int = 0  # still queued when the final flush gave up
    elapsed_s: float = 0.0
    transaction_ids: list[str] = field(default_factory=list)  # delivered, in delivery order

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.labels_failed == 0 and self.undelivered == 0

    def summary(self) -> str:
        rate = self.produced / self.elapsed_s if self.elapsed_s else 0.0
        return (f"produced={self.produced} delivered={self.delivered} failed={self.failed} fraud={self.fraud} "
                f"labels={self.labels} labels_failed={self.labels_failed} undelivered={self.undelivered} "
                f"elapsed={self.elapsed_s:.1f}s rate={rate:.0f}/s")


def label_record(transaction_id: str, scenario: str | None, source: str, is_fraud: bool = True) -> dict:
    return {
        "transaction_id": transaction_id,
        "is_fraud": is_fraud,
        "scenario": scenario,
        "labelled_at": int(time.time() * 1000),
        "source": source,
    }


def run_producer(
    settings: Settings,
    bank: str,
    tps: float = 500,
    count: int | None = None,
    duration: float | None = None,
    schema_version: int = schemas.LATEST_TRANSACTION_VERSION,
    seed: int | None = None,
    fraud_rate: float = 0.005,
    label_delay: float = 30.0,
    customers: int = 2000,
    *,
    topic: str = topology.TRANSACTIONS,
    labels_topic: str = topology.FRAUD_LABELS,
    ids_out: Path | None = None,
    keep_ids: bool = True,
    stop: threading.Event | None = None,
    registry: SchemaRegistryClient | None = None,
    progress_every: float = 5.0,
) -> ProduceReport:
    """Produce `count` transactions, or for `duration` seconds, or until `stop` is set (whichever first)."""
    stop = stop or threading.Event()
    sim = Simulator(bank, settings.card_key(), seed=seed, schema_version=schema_version,
                    fraud_rate=fraud_rate, clock=time.time, tps=tps, customers=customers)
    sender = AvroSender(settings, registry)
    tx_serializer = avro_serializer(sender.registry, schemas.transaction_schema(schema_version))
    label_serializer = avro_serializer(sender.registry, schemas.fraud_label_schema())
    # A serializer looks its schema id up in the registry on first use and caches it. The first label goes out
    # seconds after the first fraud event; if the registry is down just then (a restart), the producer would die
    # mid-run. Looked up now, while the registry answers, a later registry outage cannot stop the producer.
    label_serializer(label_record("schema-lookup", None, "simulator"),
                     SerializationContext(labels_topic, MessageField.VALUE))
    ids_file = open(ids_out, "w") if ids_out else None  # closed in finally
    tx = Deliveries(keep_ids=keep_ids, on_delivered=(lambda i: ids_file.write(i + "\n")) if ids_file else None)
    labels = Deliveries(keep_ids=False)
    waiting: deque[tuple[float, str, str | None]] = deque()  # (due wall time, transaction id, scenario)
    report = ProduceReport()
    pacer = Pacer(tps)
    started = time.monotonic()
    deadline = started + duration if duration is not None else None
    next_progress, last_count = started + progress_every, 0

    def publish_label(transaction_id: str, scenario: str | None) -> None:
        sender.send(labels_topic, label_serializer, transaction_id,
                    label_record(transaction_id, scenario, "simulator"), labels.callback(transaction_id, "label"))

    log.info("producing %s to %s: tps=%s count=%s duration=%s schema=v%d", bank, topic, tps, count, duration,
             schema_version)
    try:
        while not stop.is_set():
            now = time.monotonic()
            if (deadline is not None and now >= deadline) or (count is not None and report.produced >= count):
                break
            n = pacer.allowance()
            if count is not None:
                n = min(n, count - report.produced)
            for _ in range(n):
                event = sim.next_event()
                record = event.record
                sender.send(topic, tx_serializer, record["card_token"], record,
                            tx.callback(record["transaction_id"], "transaction"), timestamp_ms=record["event_time"])
                if event.is_fraud:
                    report.fraud += 1
                    waiting.append((time.time() + label_delay, event.transaction_id, event.scenario))
            report.produced += n
            pacer.took(n)
            while waiting and waiting[0][0] <= time.time():
                _, transaction_id, scenario = waiting.popleft()
                publish_label(transaction_id, scenario)
            if now >= next_progress:
                log.info("%s produced=%d delivered=%d failed=%d labels=%d rate=%.0f/s", bank, report.produced,
                         tx.delivered, tx.failed, labels.delivered,
                         (report.produced - last_count) / (now - next_progress + progress_every))
                next_progress, last_count = now + progress_every, report.produced
            if n == 0:
                sender.poll(pacer.wait())  # idle until the next batch is due, serving delivery callbacks
    finally:
        # labels still waiting are published now: a late label beats a lost one
        while waiting:
            _, transaction_id, scenario = waiting.popleft()
            publish_label(transaction_id, scenario)
        report.undelivered = sender.flush(60.0)
        if report.undelivered:
            log.error("%d messages still undelivered after the final flush", report.undelivered)
        if ids_file:
            ids_file.close()
        report.delivered, report.failed = tx.delivered, tx.failed
        report.labels, report.labels_failed = labels.delivered, labels.failed
        report.transaction_ids = tx.ids
        report.elapsed_s = time.monotonic() - started
    log.info("%s done: %s", bank, report.summary())
    return report
