"""After the stack has carried real traffic, no component's log holds a card number or a secret.

A bank producer (`rtfd produce`, the simulator that creates card numbers and tokenizes them) writes to the
stack's real `transactions` topic, so the Flink job, the alert consumer, the registry and Kafka all see its
traffic, plus one hostile record that carries a card number in plain text. Then every file under
<state>/logs and Flink's log folder is scanned (rtfd.security.logscan) for Luhn-valid card numbers, for the
exact card numbers the simulator made, and for every generated secret (<state>/secrets/*: database role
and registry passwords, the card-token HMAC key) and the registry's basic auth header.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from rtfd import topology
from rtfd.security import logscan
from services.producer.simulator import Simulator

pytestmark = pytest.mark.stack
PROJECT_ROOT = Path(__file__).resolve().parents[2]
COUNT = 1500
SEED = 11
HOSTILE_PAN = "4111111111111111"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def traffic(stack, flink_job_enabled):
    """Run a bank producer to completion into the stack's transactions topic; its log lands in <state>/logs."""
    bank = f"bank-scan{uuid.uuid4().hex[:6]}"
    log_path = stack.state_dir / "logs" / f"producer-{bank}.log"
    env = {**os.environ, "RTFD_STATE_DIR": str(stack.state_dir), "RTFD_PORT_OFFSET": str(stack.port_offset),
           "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtfd.cli", "produce", "--bank", bank, "--tps", "1000", "--count", str(COUNT),
             "--seed", str(SEED), "--fraud-rate", "0.05", "--label-delay", "0"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
        try:
            assert proc.wait(timeout=300) == 0, log_path.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # a hostile record: not Avro, a card number in clear; the job must dead-letter it without echoing it
    producer = Producer(stack.kafka_producer_conf(principal="producer"))
    producer.produce(topology.TRANSACTIONS, key=b"hostile", value=f'{{"pan": "{HOSTILE_PAN}"}}'.encode())
    assert producer.flush(30) == 0
    if flink_job_enabled:
        def archived() -> bool:
            with psycopg.connect(stack.postgres_dsn) as conn:
                return conn.execute("SELECT count(*) FROM transactions WHERE bank_id = %s",
                                    (bank,)).fetchone()[0] >= COUNT
        wait_for(archived, 300, f"the job to archive {COUNT} transactions of {bank}")
    return bank


def test_logs_hold_no_card_numbers_and_no_secrets(stack, traffic):
    state = stack.state_dir.resolve()
    dirs = logscan.stack_log_dirs(state)
    files = [p for d in dirs if d.is_dir() for p in d.rglob("*") if p.is_file() and p.stat().st_size > 0]
    names = {p.name for p in files}
    # the scan must have read every component's log, or passing would prove nothing
    for expected in ("postgres.log", "registry.log", "kafka-1.log", "alert-consumer.log", f"producer-{traffic}.log"):
        assert expected in names, f"{expected} missing from {sorted(names)}"
    assert any(n.startswith("flink-") for n in names), sorted(names)

    user, password = stack.registry_credentials()
    secrets = logscan.stack_secrets(state, {
        "card token key": stack.card_key().decode(),
        "registry basic auth header": base64.b64encode(f"{user}:{password}".encode()).decode(),
    })
    assert {"registry_password", "flink_db_password", "alerts_db_password", "registry_db_password",
            "card_token_key"} <= set(secrets)
    # the simulator's own card numbers, looked for literally as well (whatever their formatting in a log)
    pans = {c.card.pan for c in Simulator(traffic, stack.card_key(), seed=SEED).world.customers} | {HOSTILE_PAN}
    secrets.update({f"simulated card number {i}": pan for i, pan in enumerate(sorted(pans))})

    findings = logscan.scan_files(dirs, secrets)
    assert not findings, "\n".join(str(f) for f in findings[:50])


def test_the_scan_would_notice_a_leak(stack, traffic, tmp_path):
    """The same scan over a copy of one real log with a leaked card number and secret appended."""
    original = stack.state_dir / "logs" / f"producer-{traffic}.log"
    leaky = tmp_path / "logs" / original.name
    leaky.parent.mkdir()
    leaky.write_text(original.read_text() + f"oops {HOSTILE_PAN} {stack.state_secret('registry_password')}\n")
    findings = logscan.scan_files([leaky.parent], logscan.stack_secrets(stack.state_dir))
    assert {f.kind for f in findings} == {"card number", "secret"}
