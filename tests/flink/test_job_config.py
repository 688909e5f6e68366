"""The job's settings reach Flink: JobConfig from the RTFD_* environment, then the table environment's options
(a real TableEnvironment, no cluster)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError
from pyflink.table import EnvironmentSettings, TableEnvironment

from flink.config import JobConfig, jvm_jars, shipped_jars
from flink.job import configure
from rtfd.config import Settings


def test_python_bundles_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RTFD_FLINK_ALERT_BUNDLE_MS", "150")
    monkeypatch.setenv("RTFD_FLINK_BUNDLE_SIZE", "5000")
    config = JobConfig.from_settings(Settings())
    assert (config.alert_bundle_ms, config.python_bundle_size) == (150, 5000)
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    configure(t_env, config, local=False)
    options = t_env.get_config()
    assert options.get("python.fn-execution.bundle.time", "") == "150"
    assert options.get("python.fn-execution.bundle.size", "") == "5000"
    assert options.get("python.fn-execution.arrow.batch.size", "") == "5000"


def test_defaults_keep_bundles_small_for_latency(monkeypatch):
    for name in ("RTFD_FLINK_ALERT_BUNDLE_MS", "RTFD_FLINK_BUNDLE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    config = JobConfig.from_settings(Settings())
    assert (config.alert_bundle_ms, config.python_bundle_size) == (5, 1000)


def test_a_bundle_of_zero_ms_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("RTFD_FLINK_ALERT_BUNDLE_MS", "0")
    with pytest.raises(ValidationError, match="flink_alert_bundle_ms"):
        Settings()


def test_the_archive_url_batches_upserts_into_multi_row_statements():
    from flink.config import jdbc_from_dsn

    url, user, password = jdbc_from_dsn("postgresql://rtfd_flink:s%40cret@db.example:5432/rtfd?sslmode=require")
    assert url == "jdbc:postgresql://db.example:5432/rtfd?sslmode=require&reWriteBatchedInserts=true"
    assert (user, password) == ("rtfd_flink", "s@cret")
    assert jdbc_from_dsn("postgresql://u@h/db?reWriteBatchedInserts=false")[0] == (
        "jdbc:postgresql://h/db?reWriteBatchedInserts=true")


def test_a_cluster_submission_ships_only_the_jars_its_lib_lacks(tmp_path, monkeypatch):
    every = jvm_jars()
    connectors = [jar for jar in every if jar.parent.name == "flink"]
    assert connectors and any(jar.parent.name == "functions" for jar in every)
    for jar in connectors:  # the cluster's lib/, as rtfd.stack.flink links it
        (tmp_path / jar.name).symlink_to(jar)
    shipped = shipped_jars(str(tmp_path))
    assert [jar.parent.name for jar in shipped] == ["functions"]  # the job's own functions travel with it
    assert not any("postgresql" in jar.name or "kafka" in jar.name for jar in shipped)
    monkeypatch.delenv("FLINK_LIB_DIR", raising=False)
    assert shipped_jars() == every  # a local mini-cluster (no lib folder) gets every jar with the job
    monkeypatch.setenv("FLINK_LIB_DIR", str(tmp_path))
    assert shipped_jars() == shipped  # `flink run` exports the cluster's lib folder to the job's client


def test_every_kafka_source_names_its_clients():
    """A Kafka source without a group id or client id prefix gets `KafkaSource-<random 64-bit number>` as its
    client ids, logged by every Kafka client line: a digit run that is Luhn-valid one time in ten, which the
    log scan of issue #6 reports as a card number."""
    from flink.job import SQL_DIR

    tables = re.findall(r"CREATE TEMPORARY TABLE (\w+) \((.*?)\n\);", (SQL_DIR / "tables.sql").read_text(), re.S)
    kafka = {name: body for name, body in tables if re.search(r"'connector' = '(upsert-)?kafka'", body)}
    sources = {name: body for name, body in kafka.items() if "'sink." not in body}
    assert {"kafka_transactions", "kafka_rules"} <= set(sources)
    for name, body in sources.items():
        assert "'properties.group.id'" in body or "'properties.client.id.prefix'" in body, name


def test_the_archive_sink_runs_in_a_task_of_its_own():
    """The JDBC sink writes and flushes under one lock, on the thread of the task it is chained into. Chained to
    the Kafka source, each flush (every 200 ms, and at every checkpoint) held up every transaction on its way to
    the rules. Walking back from the sink over forward edges (what Flink chains) must not reach the source."""
    import json

    from pyflink.table.explain_detail import ExplainDetail

    from flink import job

    config = JobConfig.from_settings(Settings())
    t_env = job.make_env(config, local=True, parallelism=1)
    explained = job.build_pipeline(t_env, config).explain(ExplainDetail.JSON_EXECUTION_PLAN)
    plan = explained[explained.index("{", explained.index("== Physical Execution Plan ==")):]
    nodes = {node["id"]: node for node in json.loads(plan)["nodes"]}
    sink = next(n for n in nodes.values() if n["pact"] == "Data Sink" and "pg_archive" in n["contents"])
    chained, edges = [sink], []
    while len(chained[-1].get("predecessors", [])) == 1:
        edge = chained[-1]["predecessors"][0]
        edges.append(edge["ship_strategy"])
        if edge["ship_strategy"] != "FORWARD":
            break
        chained.append(nodes[edge["id"]])
    assert edges[-1] == "HASH", edges  # partitioned by transaction_id
    assert not any(n["pact"] == "Data Source" for n in chained), [n["contents"] for n in chained]


def test_alerts_leave_without_waiting_for_a_batch():
    """Kafka 4 producers linger 5 ms by default to fill a batch; at a few alerts a second nothing fills it,
    so every alert would just wait."""
    from flink.job import SQL_DIR

    tables = dict(re.findall(r"CREATE TEMPORARY TABLE (\w+) \((.*?)\n\);", (SQL_DIR / "tables.sql").read_text(), re.S))
    assert "'properties.linger.ms' = '0'" in tables["kafka_alerts"]
