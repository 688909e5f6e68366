"""Validate every row of a file and send the valid ones to a topic; reject the rest to a JSON Lines file.

Shared by the transaction replay and the label loader, which differ only in columns, checks and key.
Each reject line is {"line": n, "errors": [...], "row": {...}}, with card-number-like values masked.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from rtfd.config import Settings
from services.producer.sender import AvroSender, Deliveries, Pacer, avro_serializer
from services.replay.readers import read_rows
from services.transactions import redact_row

log = logging.getLogger(__name__)

Normalizer = Callable[[dict], tuple[dict, list[str]]]


@dataclass
class LoadSummary:
    read: int = 0  # data rows in the file
    sent: int = 0  # delivered to Kafka
    rejected: int = 0
    failed: int = 0  # delivery failures, including messages still queued when the final flush gave up
    reject_file: Path | None = None
    ids: list[str] = field(default_factory=list)  # delivered record ids (transaction_id), in delivery order

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        text = f"read={self.read} sent={self.sent} rejected={self.rejected} failed={self.failed}"
        return text + (f" rejects={self.reject_file}" if self.rejected else "")


def default_reject_file(path: Path) -> Path:
    """FILE.rejects.jsonl next to the input."""
    return path.with_name(path.name + ".rejects.jsonl")


def load_file(
    settings: Settings,
    path: Path,
    *,
    required: list[str],
    optional: set[str],
    nullable: set[str],
    normalize: Normalizer,
    topic: str,
    schema_str: str,
    key_field: str,
    id_field: str,
    rate: float | None = None,
    reject_file: Path | None = None,
    registry: SchemaRegistryClient | None = None,
    keep_ids: bool = True,
    stop: threading.Event | None = None,
) -> LoadSummary:
    """Send the file's valid rows to `topic` in file order, at most `rate` per second."""
    path = Path(path)
    rows = read_rows(path, required, optional, nullable)  # raises FileFormatError before anything is sent
    summary = LoadSummary(reject_file=Path(reject_file) if reject_file else default_reject_file(path))
    sender = AvroSender(settings, registry)
    serializer = avro_serializer(sender.registry, schema_str)
    deliveries = Deliveries(keep_ids=keep_ids)
    pacer = Pacer(rate)
    stop = stop or threading.Event()
    # Truncated even when nothing is rejected, so no stale rejects from an earlier run remain.
    with open(summary.reject_file, "w", encoding="utf-8") as rejects:
        try:
            for row in rows:
                if stop.is_set():
                    log.warning("stopped at line %d of %s", row.line, path)
                    break
                summary.read += 1
                if row.data is None:
                    errors, shown = [row.error], {"raw": row.raw}
                else:
                    record, errors = normalize(row.data)
                    shown = redact_row(row.data)
                if errors:
                    summary.rejected += 1
                    rejects.write(json.dumps({"line": row.line, "errors": errors, "row": shown}, default=str) + "\n")
                    continue
                if pacer.rate:
                    while not pacer.allowance(1):
                        sender.poll(pacer.wait())
                    pacer.took(1)
                # transactions carry their event_time as the Kafka timestamp (labels: the send time)
                sender.send(topic, serializer, record[key_field], record, deliveries.callback(record[id_field]),
                            timestamp_ms=record.get("event_time"))
        finally:
            undelivered = sender.flush(60.0)
            if undelivered:
                log.error("%d messages still undelivered after the final flush", undelivered)
    summary.sent, summary.failed, summary.ids = deliveries.delivered, deliveries.failed + undelivered, deliveries.ids
    log.info("%s -> %s: %s", path, topic, summary.summary())
    return summary
