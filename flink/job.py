"""The rtfd fraud-detection job: Kafka `transactions` -> PostgreSQL archive, DLQ, features, rules, alerts.

`build_pipeline(t_env, config)` is pure wiring (tests run it on their own topics); `main()` only makes the
environment. Run it on a local mini-cluster with `python -m flink.job` (or `python flink/job.py`); the
cluster runs the same file with `flink run -py flink/job.py`. Architecture: docs/flink.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from string import Template

if __package__ in (None, ""):  # `python flink/job.py` / `flink run -py flink/job.py`: make `flink` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Configuration  # noqa: E402
from pyflink.datastream import DataStream, StreamExecutionEnvironment  # noqa: E402
from pyflink.java_gateway import get_gateway  # noqa: E402
from pyflink.table import DataTypes, Schema, StatementSet, StreamTableEnvironment  # noqa: E402
from pyflink.table.expressions import col  # noqa: E402

from flink.config import JOB_NAME, PROJECT_ROOT, JobConfig, shipped_jars  # noqa: E402

SQL_DIR = Path(__file__).resolve().parent / "sql"
BUFFER_TIMEOUT_MS = 10
log = logging.getLogger(__name__)


def sql_statements(name: str, variables: dict[str, str]) -> list[str]:
    """The statements of flink/sql/<name>.sql with ${var} substituted, split on ';' at line ends."""
    text = Template((SQL_DIR / f"{name}.sql").read_text()).substitute(variables)
    statements = []
    for chunk in text.split(";\n"):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body.rstrip(";"):
            statements.append(body.rstrip(";"))
    return statements


def configure(t_env: StreamTableEnvironment, config: JobConfig, *, local: bool,
              checkpoint_interval: str = "10 s") -> None:
    """Job-level options. Checkpointing belongs to the cluster's config; on a local mini-cluster we set it."""
    conf = t_env.get_config()
    conf.set("pipeline.name", JOB_NAME)
    conf.set("table.local-time-zone", "UTC")
    conf.set("pipeline.auto-watermark-interval", "50 ms")
    conf.set("table.exec.source.idle-timeout", f"{config.idle_timeout_ms} ms")
    # the Python UDF worker (rule pass 2): same interpreter as this client, our packages on its path, small
    # bundles (latency)
    conf.set("python.executable", sys.executable)
    conf.set("python.client.executable", sys.executable)
    conf.set("python.pythonpath", str(PROJECT_ROOT))
    conf.set("python.execution-mode", "process")
    conf.set("python.fn-execution.bundle.time", str(config.alert_bundle_ms))
    conf.set("python.fn-execution.bundle.size", str(config.python_bundle_size))
    conf.set("python.fn-execution.arrow.batch.size", str(config.python_bundle_size))
    if local:
        conf.set("execution.checkpointing.interval", checkpoint_interval)
        conf.set("execution.checkpointing.mode", "EXACTLY_ONCE")
        # the per-card state outgrows the JobManager's 5 MB in-memory checkpoint limit within minutes
        checkpoints = Path(tempfile.gettempdir()) / "rtfd-flink-checkpoints"
        conf.set("execution.checkpointing.storage", "filesystem")
        conf.set("execution.checkpointing.dir", checkpoints.as_uri())


def build_pipeline(t_env: StreamTableEnvironment, config: JobConfig) -> StatementSet:
    """Register UDFs, tables and views; return the statement set of every INSERT the job runs."""
    from flink import decode, udfs

    # a Java function: decoding every transaction takes no Python (flink/decode.py)
    t_env._j_tenv.createTemporarySystemFunction("decode_transaction", decode.jvm_decoder(config.registry_url))
    variables = config.sql_vars()
    for name in ("tables", "decode"):
        for statement in sql_statements(name, variables):
            t_env.execute_sql(statement)
    materialize(t_env, "decoded", "decoded_once")
    for statement in sql_statements("validate", variables):
        t_env.execute_sql(statement)
    statements = t_env.create_statement_set()
    inserts = []
    if config.archive:
        # the JDBC sink writes and flushes under one lock, on the thread of whatever task it is chained into:
        # chained to the source, every flush (each 200 ms, and each checkpoint) held up the alert path too
        materialize(t_env, "transactions_valid", "transactions_to_archive", partition_by="transaction_id")
        inserts.append("archive")
    if config.dlq:
        inserts.append("dlq")
    if config.detect:
        t_env.create_temporary_function("raise_alerts", udfs.raise_alerts(
            config.rule_feed_conf(), config.rules_topic, config.registry_url, config.alerts_subject))
        for statement in sql_statements("features", variables):  # card_input
            t_env.execute_sql(statement)
        keyed_state(t_env, config)
        inserts.append("alerts")
    for name in inserts:  # views the INSERTs read are created on the way
        for statement in sql_statements(name, variables):
            if statement.lstrip().upper().startswith("INSERT"):
                statements.add_insert_sql(statement)
            else:
                t_env.execute_sql(statement)
    return statements


def keyed_state(t_env: StreamTableEnvironment, config: JobConfig) -> None:
    """card_input, hash-partitioned by card_token -> rule pass 1 in the JVM (per-card history in Flink keyed
    state, the rules topic broadcast) -> `anomalies`, keyed by suspect terminal -> per-terminal Flink state ->
    `anomalies_in_context`. Both evaluate each row on arrival (flink.features); no Python runs per transaction."""
    from flink import stateful

    variables = config.sql_vars()
    card_input = t_env.from_path("card_input").select(*map(col, stateful.CARD_INPUT))
    by_card = key_by_column(t_env.to_data_stream(card_input), "card_token")
    rules = t_env.to_changelog_stream(t_env.from_path("kafka_rules"))
    anomalies = stateful.card_anomalies(by_card, rules, float(variables["tiny_eur"]),
                                        config.terminal_window_min * 60_000)
    context = stateful.terminal_context(key_by_column(anomalies, "terminal_key"), config.terminal_span_min * 60_000)
    t_env.create_temporary_view("anomalies_in_context", t_env.from_data_stream(context))


def key_by_column(stream: DataStream, column: str) -> DataStream:
    """Hash-partition a stream of Rows by one named field in the JVM (DataStream.key_by would run a Python
    key selector per record). The operator that reads the result gets every row of a key, and only those."""
    jvm = get_gateway().jvm
    j_stream = stream._j_data_stream
    row_info = j_stream.getType()
    if row_info.getClass().getSimpleName() == "ExternalTypeInfo":
        # the Table API's rows are typed by a DataType; its legacy RowTypeInfo gives field positions by name
        row_info = jvm.org.apache.flink.table.types.utils.TypeConversions.fromDataTypeToLegacyInfo(
            row_info.getDataType())
    keys = jvm.org.apache.flink.api.common.operators.Keys.ExpressionKeys(column, row_info)
    selector = jvm.org.apache.flink.streaming.util.keys.KeySelectorUtil.getSelectorForKeys(
        keys, row_info, j_stream.getExecutionConfig())
    return DataStream(j_stream.keyBy(selector))


def materialize(t_env: StreamTableEnvironment, view: str, name: str, *, partition_by: str | None = None) -> None:
    """Register `name`: the rows of `view` behind a DataStream boundary, computed once; with `partition_by`,
    hash-partitioned by that column, which also starts a new task (its own thread) for what reads `name`.

    The planner inlines a view into every query that reads it and prunes its Python calc per consumer, so a
    Python UDF in a view read twice runs twice per row: `decoded` feeds the archive, the DLQ and the features
    (three decodes), `anomalies` feeds both branches of alerts.sql (two rule passes over every transaction).
    Passing the table through a DataStream makes it one shared operator; rowtime and watermarks cross the
    boundary unchanged."""
    table = t_env.from_path(view)
    stream = t_env.to_data_stream(table)
    if partition_by:
        stream = key_by_column(stream, partition_by)
    builder = Schema.new_builder()
    if "rowtime" not in table.get_schema().get_field_names():  # else it crosses as a column of the rows
        builder.column_by_metadata("rowtime", DataTypes.TIMESTAMP_LTZ(3))
    schema = builder.watermark("rowtime", "SOURCE_WATERMARK()").build()
    t_env.create_temporary_view(name, t_env.from_data_stream(stream, schema))


def make_env(config: JobConfig, *, local: bool, parallelism: int | None = None) -> StreamTableEnvironment:
    # the job's jars must be known before the table environment exists: its class loader is made once; on a
    # cluster the connectors are in its lib/ already (flink.config.shipped_jars says why)
    env_conf = Configuration()
    env_conf.set_string("pipeline.jars", ";".join(jar.as_uri() for jar in shipped_jars()))
    # a record crossing a keyed exchange (by card, by terminal) waits until its network buffer fills or this
    # timeout flushes it: Flink's default of 100 ms per exchange would be most of an alert's latency budget
    env_conf.set_string("execution.buffer-timeout.interval", f"{BUFFER_TIMEOUT_MS} ms")
    # chained operators hand records on without a defensive copy each: none of ours keeps a reference to an
    # input row (the JDBC sink copies what it buffers when reuse is on; keyed state holds strings and numbers)
    env_conf.set_string("pipeline.object-reuse", "true")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment(env_conf))
    configure(t_env, config, local=local)
    if parallelism:
        t_env.get_config().set("parallelism.default", str(parallelism))
    return t_env


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-id", help="Kafka consumer group (default rtfd-flink)")
    parser.add_argument("--transactions-topic")
    parser.add_argument("--alerts-topic")
    parser.add_argument("--dlq-topic")
    parser.add_argument("--rules-topic")
    parser.add_argument("--parallelism", type=int)
    parser.add_argument("--no-detect", action="store_true", help="archive + DLQ only")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {
        "group_id": args.group_id, "transactions_topic": args.transactions_topic,
        "alerts_topic": args.alerts_topic, "dlq_topic": args.dlq_topic, "rules_topic": args.rules_topic,
    }.items() if v}
    if args.no_detect:
        overrides["detect"] = False
    config = JobConfig.from_settings(**overrides)
    # Under `flink run` the Java client started the Py4J gateway and told us its port.
    local = "PYFLINK_GATEWAY_PORT" not in os.environ
    log.info("starting %s (%s): %s", JOB_NAME, "local mini-cluster" if local else "cluster", config)
    t_env = make_env(config, local=local, parallelism=args.parallelism)
    result = build_pipeline(t_env, config).execute()
    if local:
        result.wait()  # the mini-cluster lives as long as this process


if __name__ == "__main__":
    main()
