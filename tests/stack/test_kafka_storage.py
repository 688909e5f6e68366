"""Formatting KRaft storage with Kafka's own StorageTool (real JVM, no broker started)."""

from __future__ import annotations

import base64
import shutil
import tempfile
import uuid
from pathlib import Path

from rtfd.config import Settings
from rtfd.stack import jvm_dir, kafka


def test_new_cluster_ids_never_start_with_a_dash(monkeypatch):
    dash_first = bytes([0xF8]) + bytes(15)  # base64 of 0b111110... starts with '-'
    draws = iter([uuid.UUID(bytes=dash_first), uuid.UUID(int=1)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(dash_first).decode().startswith("-")
    assert kafka.new_cluster_id() == base64.urlsafe_b64encode(uuid.UUID(int=1).bytes).rstrip(b"=").decode()


def test_a_cluster_id_with_a_leading_dash_formats():
    """CI once drew such an id, and StorageTool read `-t -xyz…` as a missing value: the format failed, the stack
    did not start. A state folder may still hold one, so the id travels as `--cluster-id=<id>`."""
    state = Path(tempfile.mkdtemp(prefix="rtfd-kafka-format-"))
    try:
        settings = Settings(state_dir=state, port_offset=700, kafka_secure=False)
        cluster = kafka.KafkaCluster(settings, jvm_dir(), {})
        cluster.root.mkdir(parents=True)
        dash_id = base64.urlsafe_b64encode(bytes([0xF8]) + uuid.uuid4().bytes[1:]).rstrip(b"=").decode()
        (cluster.root / "cluster_id").write_text(dash_id)
        cluster.configure(1)
        metas = sorted(cluster.root.glob("*/data/meta.properties"))
        assert len(metas) == len(kafka.plan_nodes(settings, 1))  # every node of the cluster, formatted
        assert all(f"cluster.id={dash_id}" in meta.read_text() for meta in metas)
    finally:
        shutil.rmtree(state, ignore_errors=True)
