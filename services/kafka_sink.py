"""Avro topic -> PostgreSQL, each record once, offsets only after the commit: the loop every sink service shares.

A sink (services/alerts/consumer.py, services/labels/consumer.py) says what a record is and how a batch is written;
this module does the rest. Per batch (consume up to `batch_size` messages):
  1. decode each message with the registry's schema and validate it (`parse`); a poison message (undecodable, or
     not a valid record) goes to the dead-letter topic with its original bytes and the reason in headers;
  2. write the good records in one transaction (`write`, idempotent: a redelivery is a no-op) and make sure the
     dead letters are delivered;
  3. only then commit the batch's offsets, synchronously.
A failure of PostgreSQL, the registry or the dead-letter delivery keeps the batch and retries with backoff;
meanwhile the assigned partitions are paused and the consumer keeps polling, so it stays in its group. On
SIGTERM/SIGINT the current batch is finished (or, if it cannot be, left uncommitted for redelivery) and the
consumer closes. At-least-once from Kafka plus an idempotent write = each record's effect exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import psycopg
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.common._httpx_compat import httpx as registry_httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from rtfd.config import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# A write must fail rather than hang (a dead server behind a silent network, a lock held by a migration):
# a failure is retried like an outage, a hang would stall the consumer until the group evicts it.
DB_TIMEOUTS = {"tcp_user_timeout": 30_000, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 3, "options": "-c statement_timeout=60s"}
# PostgreSQL is away (or the table not migrated yet): the batch waits; anything else is about the batch itself
DB_TRANSIENT: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError,
                                                 psycopg.errors.UndefinedTable)

Record = TypeVar("Record")


class Poison(Exception):
    """This message can never be stored; the message is the dead-letter reason."""


class RegistryUnavailable(Exception):
    """The schema registry could not answer (down, 5xx): retry later, the message itself may be fine."""


class _GaveUp(Exception):
    """A retry loop ended because the consumer is stopping."""


@dataclass
class ConsumerStats:
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    committed_batches: int = 0
    retries: int = 0


@dataclass
class _Batch(Generic[Record]):
    records: list[tuple[Record, Message]]
    dead: list[tuple[Message, str]]
    offsets: dict[tuple[str, int], int]  # (topic, partition) -> next offset to commit


class AvroSink(ABC, Generic[Record]):
    """Consume `topic` as consumer group `group_id` into PostgreSQL (`dsn`, default: the stack's).

    Subclasses set `kind` (the word progress logs use) and `principal` (the Kafka principal it consumes and
    dead-letters as, rtfd.config.KAFKA_PRINCIPALS) and implement `parse` and `write`."""

    kind = "records"
    table = "PostgreSQL"  # named in logs
    principal: str

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str,
        dlq_topic: str,
        group_id: str,
        dsn: str | None = None,
        batch_size: int = BATCH_SIZE,
        progress_interval: float = 10.0,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        consumer_conf: dict | None = None,
    ):
        self.settings = settings
        self.dsn = dsn or settings.postgres_dsn
        self.topic, self.dlq_topic, self.group_id = topic, dlq_topic, group_id
        self.batch_size = batch_size
        self.progress_interval = progress_interval
        self.backoff, self.max_backoff = backoff, max_backoff
        self.consumer_conf = consumer_conf or {}
        self.stats = ConsumerStats()
        self._values = AvroDeserializer(SchemaRegistryClient(settings.registry_conf()))
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._conn: psycopg.Connection | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._holding = False  # a batch waits for a retry: partitions stay paused, also newly assigned ones
        self._carry: list[Message] = []  # messages that arrived while holding anyway; next batch
        self._last_progress = time.monotonic()
        self._logged = ConsumerStats()

    # --- what a subclass says -------------------------------------------------------------------------------
    @abstractmethod
    def parse(self, record: Any, msg: Message) -> Record:
        """A decoded Avro value -> the record to write; raise Poison (naming the problem) if it can never be."""

    @abstractmethod
    def write(self, conn: psycopg.Connection, records: Sequence[Record]) -> list:
        """Write the records in one transaction, idempotently; return the keys of those that changed the table
        (the rest were duplicates or stale). Raises psycopg errors: transient ones are retried, data errors
        isolated record by record."""

    def on_start(self) -> None:
        """Called once before consuming (e.g. start a notifier thread)."""

    def on_close(self) -> None:
        """Called once after the consumer closed."""

    def on_written(self, records: Sequence[Record], changed: list) -> None:
        """Called after a batch's offsets were committed, with its records and the keys `write` returned."""

    def progress_detail(self) -> str:
        """Appended to the progress log line."""
        return ""

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> ConsumerStats:
        """Consume until `stop` is set; then finish the batch in hand and close. Returns the counts."""
        ensure_topic(self.settings, self.dlq_topic, principal=self.principal)
        self._consumer = Consumer(self.settings.kafka_consumer_conf(self.group_id, principal=self.principal,
                                                               **self.consumer_conf))
        self._producer = Producer(self.settings.kafka_producer_conf(principal=self.principal,
                                                               **{"linger.ms": 5, "delivery.timeout.ms": 30000}))
        self.on_start()
        log.info("%s consumer: %s -> %s (group %s, dead letters to %s)", self.kind, self.topic, self.table,
                 self.group_id, self.dlq_topic)
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        try:
            while not stop.is_set():
                messages = self._carry + consume_available(self._consumer, self.batch_size, timeout=1.0)
                self._carry = []
                if messages:
                    self._process(messages, stop)
                self._progress()
        finally:
            self._progress(force=True)
            self._consumer.close()  # auto-commit is off: close commits nothing
            self._producer.flush(10)
            self.on_close()
            if self._conn is not None:
                self._conn.close()
        return self.stats

    def _process(self, messages: list[Message], stop: threading.Event) -> None:
        self.stats.batches += 1
        try:
            batch = self._decode(messages, stop)
            self._dead_letter(batch.dead, stop)
            changed = self._store(batch, stop)
        except _GaveUp:
            log.warning("stopping with an unfinished batch of %d message(s): offsets not committed, "
                        "they will be consumed again", len(messages))
            return
        finally:
            self._release()
        self._commit(batch.offsets)
        self.stats.stored += len(changed)
        self.stats.duplicates += len(batch.records) - len(changed)
        self.stats.dead_lettered += len(batch.dead)
        if batch.records:
            self.on_written([r for r, _ in batch.records], changed)

    # --- 1. decode and validate -------------------------------------------------------------------------------
    def _decode(self, messages: list[Message], stop: threading.Event) -> _Batch[Record]:
        batch: _Batch[Record] = _Batch([], [], {})
        for msg in messages:
            if msg.error() is not None:
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", msg.error())
                continue
            batch.offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            try:
                record = self._retry("reach the schema registry", lambda m=msg: self._parse(m), stop,
                                     transient=(RegistryUnavailable,))
            except Poison as exc:
                batch.dead.append((msg, str(exc)))
            else:
                batch.records.append((record, msg))
        return batch

    def _parse(self, msg: Message) -> Record:
        if msg.value() is None:
            raise Poison("empty value (tombstone)")
        try:
            value = self._values(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
        except SchemaRegistryError as exc:
            # only "no such schema" is about this message; auth, rate limits and 5xx are about the registry
            if exc.http_status_code == 404:
                raise Poison(f"not decodable: schema registry: {exc}") from exc
            raise RegistryUnavailable(str(exc)) from exc
        except (registry_httpx.TransportError, ConnectionError) as exc:
            raise RegistryUnavailable(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - fastavro and the deserializer raise many kinds on garbage
            raise Poison(f"not decodable: {type(exc).__name__}: {exc}") from exc
        return self.parse(value, msg)

    # --- 2a. dead letters -------------------------------------------------------------------------------------
    def _dead_letter(self, dead: list[tuple[Message, str]], stop: threading.Event) -> None:
        """Deliver every dead letter (acks=all), retrying failed deliveries; only then may offsets move."""
        pending, delay = dead, self.backoff
        while pending:
            results: dict[int, KafkaError | None] = {}
            for i, (msg, reason) in enumerate(pending):
                self._produce_dead_letter(msg, reason, lambda err, _m, i=i, r=results: r.__setitem__(i, err))
            while len(results) < len(pending):  # bounded by delivery.timeout.ms
                self._producer.poll(0.2)
                self._keep_membership()
            failed = []
            for i, (msg, reason) in enumerate(pending):
                if results[i] is None:
                    log.warning("dead-lettered %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)
                else:
                    failed.append((msg, reason))
            if failed:
                self._retry_wait(f"deliver {len(failed)} dead letter(s) to {self.dlq_topic}: "
                                 f"{results[pending.index(failed[0])]}", stop, delay)
                delay = min(delay * 2, self.max_backoff)
            pending = failed

    def _produce_dead_letter(self, msg: Message, reason: str, on_delivery: Callable) -> None:
        headers = list(msg.headers() or []) + [
            ("dlq.reason", reason.encode()),
            ("dlq.source.topic", msg.topic().encode()),
            ("dlq.source.partition", str(msg.partition()).encode()),
            ("dlq.source.offset", str(msg.offset()).encode()),
            ("dlq.source.timestamp", str(msg.timestamp()[1]).encode()),
            ("dlq.consumer.group", self.group_id.encode()),
            ("dlq.failed_at", datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
        ]
        while True:
            try:
                self._producer.produce(self.dlq_topic, key=msg.key(), value=msg.value(), headers=headers,
                                       on_delivery=on_delivery)
                return
            except BufferError:
                self._producer.poll(0.1)

    # --- 2b. write ----------------------------------------------------------------------------------------------
    def _store(self, batch: _Batch[Record], stop: threading.Event) -> list:
        records = [r for r, _ in batch.records]
        if not records:
            return []
        try:
            return self._retry(f"write {self.kind} to {self.table}", lambda: self._write(records), stop,
                               transient=DB_TRANSIENT)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # one record the checks let through but PostgreSQL refuses: find it, so the rest are not held up
            log.warning("PostgreSQL refused the batch (%s); writing %s one by one", exc.sqlstate, self.kind)
            return self._store_one_by_one(batch, stop)

    def _store_one_by_one(self, batch: _Batch[Record], stop: threading.Event) -> list:
        changed, refused = [], []
        for record, msg in batch.records:
            try:
                changed += self._retry(f"write {self.kind} to {self.table}", lambda r=record: self._write([r]),
                                       stop, transient=DB_TRANSIENT)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                refused.append((msg, f"refused by PostgreSQL: {str(exc).strip().splitlines()[0]}"))
        if refused:
            self._dead_letter(refused, stop)
            batch.dead += refused
            batch.records = [(r, m) for r, m in batch.records if all(m is not d for d, _ in refused)]
        return changed

    def _write(self, records: list[Record]) -> list:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.dsn, **DB_TIMEOUTS)
            return self.write(self._conn, records)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            raise

    # --- 3. commit ----------------------------------------------------------------------------------------------
    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        # partitions revoked meanwhile are skipped: their new owner consumes them again (harmless: idempotent)
        mine = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self._assigned]
        if not mine:
            return
        try:
            result = self._consumer.commit(offsets=mine, asynchronous=False)
        except KafkaException as exc:
            log.warning("committing offsets failed (%s); the batch is stored and will be deduped if redelivered",
                        exc.args[0])
            return
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            log.warning("committing offsets failed for %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in failed))
        else:
            self.stats.committed_batches += 1

    # --- retries without leaving the group ------------------------------------------------------------------------
    def _retry(self, what: str, fn: Callable, stop: threading.Event, transient: tuple[type[BaseException], ...]):
        delay = self.backoff
        while True:
            try:
                return fn()
            except transient as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self._retry_wait(f"{what}: {first_line}", stop, delay)
                delay = min(delay * 2, self.max_backoff)

    def _retry_wait(self, problem: str, stop: threading.Event, delay: float | None = None) -> None:
        """Log, then wait `delay` seconds with the partitions paused, polling so the group keeps us."""
        self.stats.retries += 1
        if stop.is_set():
            raise _GaveUp
        delay = self.backoff if delay is None else delay
        log.warning("cannot %s; keeping the batch, retry in %.1fs", problem, delay)
        self._hold()
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if stop.wait(0):
                raise _GaveUp
            self._keep_membership(min(0.5, max(0.0, deadline - time.monotonic())))
            self._progress()

    def _hold(self) -> None:
        if not self._holding:
            self._holding = True
            self._consumer.pause(self._consumer.assignment())

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self._consumer.resume(self._consumer.assignment())

    def _keep_membership(self, timeout: float = 0.0) -> None:
        """Poll the consumer (rebalances, heartbeats, max.poll.interval.ms). Paused partitions deliver nothing;
        anything that still arrives (a partition assigned in between) is carried to the next batch."""
        if self._holding:
            self._carry += consume_available(self._consumer, self.batch_size, timeout)
        elif timeout:
            time.sleep(timeout)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        if self._holding:
            consumer.assign(partitions)
            consumer.pause(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned -= {(tp.topic, tp.partition) for tp in partitions}

    # --- progress -------------------------------------------------------------------------------------------------
    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        s, last = self.stats, self._logged
        log.info("%s: stored %d (+%d), duplicates %d, dead-lettered %d, lag %s%s%s", self.kind, s.stored,
                 s.stored - last.stored, s.duplicates, s.dead_lettered, self._lag(),
                 ", retrying" if self._holding else "", self.progress_detail())
        self._logged = ConsumerStats(**vars(s))

    def _lag(self) -> str:
        """Messages behind the end of the assigned partitions, from cached watermarks (no broker round trip)."""
        try:
            positions = self._consumer.position(self._consumer.assignment())
            total = 0
            for tp in positions:
                high = self._consumer.get_watermark_offsets(tp, cached=True)[1]
                if tp.offset == OFFSET_INVALID or high < 0:
                    return "?"
                total += max(0, high - tp.offset)
            return str(total)
        except (KafkaException, RuntimeError):
            return "?"


def consume_available(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to `max_messages` messages, returned as soon as there is one: what the client holds then comes along.

    `Consumer.consume(n, timeout)` returns only when it has n messages or the timeout has passed, so on a quiet
    topic every message waited out the timeout (an alert reached PostgreSQL up to 1 s late; `rtfd bench` timed
    alerts up to 0.5 s late). Waits up to `timeout` for the first message only."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, timeout=0)] if max_messages > 1 else [first]


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """A connection in autocommit mode: each write is then exactly its own transaction."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5, **kwargs)


def ensure_topic(settings: Settings, name: str, partitions: int = 1, *, principal: str = "admin") -> None:
    """Create the dead-letter topic if missing (replicated like the other topics, capped by the brokers)."""
    admin = AdminClient(settings.kafka_client_conf(principal=principal))
    metadata = admin.list_topics(timeout=15)
    if name in metadata.topics:
        return
    replication = min(3, len(metadata.brokers))
    config = {"min.insync.replicas": str(min(2, replication))}
    try:
        admin.create_topics([NewTopic(name, partitions, replication, config=config)])[name].result(30)
        log.info("created topic %s", name)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
