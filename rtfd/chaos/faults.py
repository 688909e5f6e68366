"""The faults themselves: crash a component, keep it down, exhaust PostgreSQL's connection slots, send
records the job must dead-letter. Every fault has an undo that is safe to call twice, so a scenario can
always clean up in `finally`, even after a failed assertion.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import fastavro
import httpx
import psycopg
from confluent_kafka import KafkaException, Producer

import schemas
from rtfd import topology
from rtfd.config import Settings
from rtfd.stack import NativeStack, supervisor
from rtfd.stack.process import ManagedProcess, StackError

log = logging.getLogger(__name__)


# --- processes --------------------------------------------------------------------------------------------------
@contextmanager
def held(stack: NativeStack, name: str, seconds: float):
    """Keep the supervisor's hands off `name` while the block runs (at most `seconds`: the hold expires)."""
    supervisor.hold(stack.state, name, seconds)
    try:
        yield
    finally:
        supervisor.release(stack.state, name)


def supervisor_running(stack: NativeStack) -> bool:
    return stack.supervisor().is_running()


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - not yet
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def crash(proc: ManagedProcess) -> int:
    """kill -9, as a crash or the OOM killer would; returns the pid that died."""
    pid = proc.pid
    if pid is None:
        raise StackError(f"{proc.name} is not running, so it cannot be crashed; is the stack up (`rtfd status`)?")
    proc.kill()
    return pid


def ensure_restarted(stack: NativeStack, proc: ManagedProcess, old_pid: int, supervisor_grace: float) -> str:
    """Bring a crashed component back: the supervisor restarts it when it runs (the platform's own recovery,
    within `supervisor_grace` s); otherwise, or if it did not, we start it. Returns who restarted it."""
    if supervisor_running(stack) and wait_until(lambda: proc.pid not in (None, old_pid), supervisor_grace):
        return "supervisor"
    with held(stack, proc.name, 120):
        if not proc.is_running():
            proc.start()
            return "chaos"
    return "supervisor"


def start_if_down(stack: NativeStack, proc: ManagedProcess) -> None:
    """Undo of every process fault: start the component again if it is down (under a hold, so the
    supervisor does not race us)."""
    if proc.is_running():
        return
    with held(stack, proc.name, 120):
        if not proc.is_running():
            proc.start()


# --- PostgreSQL connection slots -----------------------------------------------------------------------------------
@dataclass
class ConnectionHog:
    """Holds every free connection slot of the (private) PostgreSQL server until released."""

    dsn: str
    limit: int = 1000
    conns: list[psycopg.Connection] = field(default_factory=list)
    refused: str = ""

    def fill(self) -> int:
        while len(self.conns) < self.limit:
            try:
                self.conns.append(psycopg.connect(self.dsn, connect_timeout=5, autocommit=True))
            except psycopg.OperationalError as exc:
                self.refused = str(exc).strip().splitlines()[-1]
                break
        return len(self.conns)

    def release(self) -> None:
        for conn in self.conns:
            try:
                conn.close()
            except psycopg.Error:
                pass
        self.conns.clear()


# --- bad input ---------------------------------------------------------------------------------------------------
def latest_schema_id(settings: Settings, subject: str) -> int:
    response = httpx.get(f"{settings.registry}/subjects/{subject}/versions/latest", timeout=10)
    if not response.is_success:
        raise StackError(f"the registry has no {subject} ({response.status_code}); `rtfd schemas register`")
    return int(response.json()["id"])


def _avro(schema_text: str, schema_id: int, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(schema_text)), record)
    return out.getvalue()


def bad_records(settings: Settings, prefix: str, each: int, valid_record: dict) -> dict[str, bytes | None]:
    """Records the job must dead-letter, keyed by a unique key per record (the DLQ keeps the key):
    garbage bytes, a truncated header, an unknown schema id, a wrong schema (a fraud label where a
    transaction belongs), a contract breach (negative amount), a null value and oversized garbage (~900 KB
    behind a valid header, under Kafka's 1 MB limit)."""
    tx_id = latest_schema_id(settings, topology.value_subject(topology.TRANSACTIONS))
    label_id = latest_schema_id(settings, topology.value_subject(topology.FRAUD_LABELS))
    tx_schema = schemas.transaction_schema(schemas.LATEST_TRANSACTION_VERSION)
    out: dict[str, bytes | None] = {}
    for i in range(each):
        label = {"transaction_id": f"{prefix}-x{i}", "is_fraud": True, "scenario": None,
                 "labelled_at": int(time.time() * 1000), "source": "chaos"}
        breach = dict(valid_record, transaction_id=f"{prefix}-breach-{i}", amount_minor=-100,
                      event_time=int(time.time() * 1000))
        out[f"{prefix}-garbage-{i}"] = b"\x07" + os.urandom(200)
        out[f"{prefix}-truncated-{i}"] = b"\x00\x00\x01"
        out[f"{prefix}-unknown-id-{i}"] = struct.pack(">bI", 0, 987_000 + i) + os.urandom(64)
        out[f"{prefix}-wrong-schema-{i}"] = _avro(schemas.fraud_label_schema(), label_id, label)
        out[f"{prefix}-breach-{i}"] = _avro(tx_schema, tx_id, breach)
        out[f"{prefix}-null-{i}"] = None
        out[f"{prefix}-oversized-{i}"] = struct.pack(">bI", 0, tx_id) + os.urandom(900_000)
    return out


def card_testing_records(settings: Settings, bank: str, prefix: str,
                         cards: int) -> tuple[list[tuple[str, str, bytes, int]], set[str]]:
    """Transactions that must raise an alert whatever the card's history: per card five tiny online charges,
    then a large one (the card_testing rule). The load's own fraud episodes unfold in wall-clock minutes
    (card testing 5-25 min, impossible travel 3-30 min), so a one-minute run with fresh banks raises almost no
    alert; these make the alert path provable in any run. Returns the records (transaction id, card token,
    value, Kafka timestamp) in send order, and the ids of the large charges, each of which must raise an alert.
    Event times are now: the job evaluates each transaction on arrival, however late it is delivered (with
    event-time OVER windows these were dropped as late whenever the fault delayed them)."""
    tx_id = latest_schema_id(settings, topology.value_subject(topology.TRANSACTIONS))
    tx_schema = schemas.transaction_schema(schemas.LATEST_TRANSACTION_VERSION)
    start = int(time.time() * 1000)
    out, large = [], set()
    for c in range(cards):
        token = f"tok-{prefix}-{c}"
        amounts = [100] * 5 + [500_000]  # 1 EUR probes, then 5,000 EUR
        for i, amount in enumerate(amounts):
            at = start + c * len(amounts) + i  # distinct, increasing event times per card
            record = {
                "transaction_id": f"{prefix}-{c}-{i}", "event_time": at, "bank_id": bank,
                "customer_id": f"{prefix}-customer-{c}", "card_token": token, "merchant_id": f"{prefix}-shop",
                "terminal_id": f"{prefix}-web", "mcc": "5732", "amount_minor": amount, "currency": "EUR",
                "channel": "ECOM", "country": "DE", "lat": None, "lon": None, "device_id": f"{prefix}-device-{c}",
            }  # fmt: skip
            out.append((record["transaction_id"], token, _avro(tx_schema, tx_id, record), at))
        large.add(out[-1][0])
    return out, large


def send_transactions(settings: Settings, records: list[tuple[str, str, bytes, int]]) -> set[str]:
    """Send (transaction id, key, value, timestamp) records to `transactions` as a bank's producer does
    (acks=all, idempotent, keyed by card token); returns the ids Kafka acknowledged."""
    producer = Producer(settings.kafka_producer_conf(principal="producer", **{"linger.ms": 5}))
    delivered: set[str] = set()
    for tx, key, value, at in records:
        producer.produce(topology.TRANSACTIONS, key=key.encode(), value=value, timestamp=at,
                         on_delivery=lambda err, _msg, tx=tx: err is None and delivered.add(tx))
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise StackError(f"{left} alert-triggering transaction(s) still undelivered after 60 s; is Kafka up?")
    return delivered


@dataclass
class Injection:
    accepted: list[str] = field(default_factory=list)  # keys Kafka acknowledged
    refused: dict[str, str] = field(default_factory=dict)  # key -> why Kafka refused it (expected: over-limit)


def inject(settings: Settings, records: dict[str, bytes | None], over_limit: int = 1, prefix: str = "") -> Injection:
    """Send `records` to `transactions` (acks=all) plus `over_limit` records of 2 MB, which Kafka must refuse
    (message.max.bytes is 1 MB): the platform's first line against oversized input."""
    result = Injection()
    # as a bank's producer would send it: the producer principal may write transactions
    producer = Producer(settings.kafka_producer_conf(principal="producer",
                                                     **{"message.max.bytes": 4_000_000, "linger.ms": 5}))

    def on_delivery(key: str):
        def report(err, _msg):
            if err is None:
                result.accepted.append(key)
            else:
                result.refused[key] = err.str()

        return report

    sends = dict(records)
    sends.update({f"{prefix}-over-limit-{i}": os.urandom(2_000_000) for i in range(over_limit)})
    for key, value in sends.items():
        try:
            producer.produce(topology.TRANSACTIONS, key=key.encode(), value=value, on_delivery=on_delivery(key))
        except KafkaException as exc:
            result.refused[key] = str(exc)
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise StackError(f"{left} injected record(s) still undelivered after 60 s; is Kafka up?")
    return result
