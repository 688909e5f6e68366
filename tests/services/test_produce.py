"""The bank producer against the real stack: what is produced is what a consumer reads back."""

from __future__ import annotations

import json
import logging
import signal

import pytest
from click.testing import CliRunner

from rtfd.config import Settings
from services.producer.cli import produce
from services.producer.run import run_producer
from services.producer.simulator import Simulator
from tests.kafka_helpers import consume_all, create_topic

pytestmark = pytest.mark.stack


def pans_of(settings: Settings, bank: str, seed: int) -> set[str]:
    return {c.card.pan for c in Simulator(bank, settings.card_key(), seed=seed).world.customers}


def test_produce_v1_and_v2_and_read_back(stack, unique_topic, caplog):
    caplog.set_level(logging.INFO)
    topic, labels_topic = create_topic(stack, unique_topic), create_topic(stack, unique_topic + "-labels", 3)
    reports = [
        run_producer(stack, "bank-t", tps=2000, count=400, schema_version=version, seed=version, fraud_rate=0.05,
                     label_delay=0.2, topic=topic, labels_topic=labels_topic)
        for version in (1, 2)
    ]
    for r in reports:
        assert r.ok and r.produced == r.delivered == 400 and r.failed == 0
    ids = set(reports[0].transaction_ids) | set(reports[1].transaction_ids)
    assert len(ids) == 800

    messages = consume_all(stack, topic, 800)
    assert len(messages) == 800
    assert {v["transaction_id"] for _, v in messages} == ids
    assert all(k == v["card_token"] for k, v in messages)
    v2_ids = set(reports[1].transaction_ids)
    assert all(("device_id" in v) == (v["transaction_id"] in v2_ids) for _, v in messages)

    labels = consume_all(stack, labels_topic, sum(r.labels for r in reports))
    assert len(labels) == sum(r.fraud for r in reports) == sum(r.labels for r in reports) > 0
    assert all(v["is_fraud"] and v["source"] == "simulator" and v["scenario"] for _, v in labels)
    assert {v["transaction_id"] for _, v in labels} <= ids

    pans = pans_of(stack, "bank-t", 1) | pans_of(stack, "bank-t", 2)
    seen = json.dumps([v for _, v in messages + labels], default=str) + caplog.text
    assert not any(pan in seen for pan in pans)


def test_produce_command_writes_delivered_ids(stack, unique_topic, tmp_path):
    topic = create_topic(stack, unique_topic)
    ids_file = tmp_path / "ids.txt"
    env = {"RTFD_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "RTFD_REGISTRY_URL": stack.registry,
           "RTFD_STATE_DIR": str(stack.state_dir), "RTFD_PORT_OFFSET": str(stack.port_offset)}
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(produce, ["--bank", "bank-c", "--tps", "1000", "--count", "120", "--seed", "3",
                                              "--label-delay", "0", "--topic", topic, "--labels-topic",
                                              create_topic(stack, unique_topic + "-labels", 3),
                                              "--ids-out", str(ids_file)], env=env)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert result.exit_code == 0, result.output
    ids = ids_file.read_text().split()
    assert len(ids) == len(set(ids)) == 120
    assert {v["transaction_id"] for _, v in consume_all(stack, topic, 120)} == set(ids)
