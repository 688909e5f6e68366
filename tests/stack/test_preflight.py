"""`rtfd up` fails with a message that names the fix: missing Java, PostgreSQL, Kafka jars, or a taken port."""

from __future__ import annotations

import shutil
import socket

import pytest

from rtfd.config import Settings
from rtfd.stack import kafka, postgres
from rtfd.stack.process import ManagedProcess, StackError, ensure_port_free


def test_missing_java_names_the_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="Java 17.*apt-get install openjdk"):
        kafka.java_binary()


def test_missing_postgres_binaries_name_the_install(monkeypatch):
    monkeypatch.delenv("RTFD_PG_BIN", raising=False)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="apt-get install postgresql.*RTFD_PG_DSN"):
        postgres.find_bin_dir()


def test_missing_kafka_jars_name_make_install(tmp_path):
    with pytest.raises(StackError, match="make install"):
        kafka.kafka_classpath(tmp_path)


def test_taken_port_is_named_with_the_offset_fix():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} for kafka-1 is already taken.*RTFD_PORT_OFFSET"):
            ensure_port_free(port, "kafka-1")


def test_component_dying_at_start_reports_its_log_tail(tmp_path):
    proc = ManagedProcess(
        name="doomed",
        cmd=["sh", "-c", "echo 'fatal: bad config line 7'; exit 3"],
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "logs",
    )
    proc.start()
    with pytest.raises(StackError, match="doomed died while starting(.|\n)*bad config line 7"):
        proc.wait_ready(lambda: False, timeout=10)


def test_topology_plan_matches_the_design():
    nodes = kafka.plan_nodes(Settings(_env_file=None, port_offset=0), 3)
    assert [n.name for n in nodes] == ["kafka-controller", "kafka-1", "kafka-2", "kafka-3"]
    assert [n.client_port for n in nodes[1:]] == [9092, 9093, 9094]
    assert nodes[0].roles == ("controller",) and nodes[0].controller_port == 19093
    single = kafka.plan_nodes(Settings(_env_file=None, port_offset=0), 1)
    assert len(single) == 1 and set(single[0].roles) == {"broker", "controller"}
