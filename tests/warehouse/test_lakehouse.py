"""The lakehouse on data produced by the real pipeline: simulated banks -> Kafka -> Flink job -> archive
(+ alerts, fraud labels) -> Dagster assets -> Great Expectations checks -> Parquet lake -> DuckDB marts.

One module fixture produces and waits for the archive, then materializes every event date of the run into a
lake folder of the test's own (the stack's Dagster instance records the runs).
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dashboards import data as dash
from orchestration.lake import assets, checks
from orchestration.resources import LakeResource
from rtfd import lake as lake_cli
from services.producer.run import run_producer
from warehouse import lake
from warehouse.tables import PRIMARY_KEYS, SCHEMAS

warnings.filterwarnings("ignore", module="dagster")
pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]


def wait_for(predicate, timeout: float, what: str, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def scalar(dsn: str, sql: str, params=()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchone()[0]


class Run:
    """What this module produced and where its lake is."""

    def __init__(self, settings, tmp):
        self.settings = settings
        self.bank = f"lake-{uuid.uuid4().hex[:8]}"
        self.lake_dir = tmp / "lake"
        self.resources = {"lake_store": LakeResource(
            state_dir=str(settings.state_dir), port_offset=settings.port_offset, lake_dir=str(self.lake_dir),
            database=str(tmp / "lake" / "rtfd.duckdb"))}
        self.store = self.resources["lake_store"]

    def archived(self) -> int:
        return scalar(self.settings.postgres_dsn, "SELECT count(*) FROM transactions WHERE bank_id = %s", (self.bank,))

    def alerts(self) -> int:
        return scalar(self.settings.postgres_dsn, "SELECT count(*) FROM alerts WHERE bank_id = %s", (self.bank,))

    def labels(self) -> int:
        return scalar(self.settings.postgres_dsn, "SELECT count(*) FROM fraud_labels l JOIN transactions t "
                      "USING (transaction_id) WHERE t.bank_id = %s", (self.bank,))

    def dates(self) -> list[date]:
        with psycopg.connect(self.settings.postgres_dsn) as conn:
            rows = conn.execute("SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date FROM transactions "
                                "WHERE bank_id = %s ORDER BY 1", (self.bank,)).fetchall()
        return [r[0] for r in rows]

    def materialize_partition(self, day: date, selection=None) -> dg.ExecuteInProcessResult:
        return dg.materialize([assets.archive_extract, assets.lake_partition, *checks.CHECKS],
                              partition_key=day.isoformat(), resources=self.resources, selection=selection,
                              run_config=lake_cli.QUIET_LOGS, raise_on_error=False)


def settled(count, quiet_s: float = 10.0, timeout: float = 120.0) -> int:
    """The value of count() once it stopped changing for quiet_s (alerts trail the archive)."""
    last, since, deadline = count(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(2)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


@pytest.fixture(scope="module")
def run(stack, tmp_path_factory):
    r = Run(stack, tmp_path_factory.mktemp("lakehouse"))
    report = run_producer(stack, r.bank, tps=400, count=1600, seed=5, fraud_rate=0.05, label_delay=0.0,
                          keep_ids=False)
    assert report.ok and report.delivered == 1600, report.summary()
    r.produced = report
    wait_for(lambda: r.archived() >= report.delivered, 300, f"{report.delivered} transactions of {r.bank} archived")
    wait_for(lambda: r.labels() >= report.labels, 120, f"{report.labels} fraud labels stored")
    r.alert_count = settled(r.alerts)
    r.days = r.dates()
    with psycopg.connect(stack.postgres_dsn) as conn:
        r.snapshot = conn.execute("SELECT now()").fetchone()[0]  # what the build below sees, at least
    r.outcome, r.marts_ok = lake_cli.build(stack, r.days, say=print, resources=r.resources)
    return r


def test_lake_holds_every_archived_transaction_alert_and_label(run):
    assert urlsplit(run.store.dsn).username == "rtfd_lake"  # Dagster reads the archive as its read-only role
    assert run.outcome and all(run.outcome.values()), run.outcome
    assert run.marts_ok
    tx = pa.concat_tables(lake.lake_rows(run.lake_dir, "transactions", d) for d in run.days)
    mine = tx.filter(pa.compute.equal(tx["bank_id"], run.bank))
    assert mine.num_rows == run.produced.delivered
    assert mine.schema == SCHEMAS["transactions"]
    folders = {p.parent.name for d in run.days for p in lake.partition_dir(run.lake_dir, "transactions", d).glob("*/*")}
    assert f"bank={run.bank}" in folders
    alerts = pa.concat_tables(lake.lake_rows(run.lake_dir, "alerts", d) for d in run.days)
    assert (pa.compute.sum(pa.compute.equal(alerts["bank_id"], run.bank)).as_py() or 0) >= run.alert_count
    labels = pa.concat_tables(lake.lake_rows(run.lake_dir, "fraud_labels", d) for d in run.days)
    assert (pa.compute.sum(pa.compute.equal(labels["bank_id"], run.bank)).as_py() or 0) == run.produced.labels
    for day in run.days:
        assert lake.staged_path(run.lake_dir, "transactions", day).exists()
        files = list(lake.partition_dir(run.lake_dir, "transactions", day).glob("bank=*/part-0.parquet"))
        assert files and all(pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD" for f in files)


def test_rematerializing_a_partition_gives_identical_parquet_rows(run):
    day = run.days[-1]
    before = {t: lake.lake_rows(run.lake_dir, t, day) for t in SCHEMAS}
    files_before = sorted(p.relative_to(run.lake_dir) for p in lake.partition_dir(run.lake_dir, "transactions", day)
                          .rglob("*.parquet"))
    result = run.materialize_partition(day)
    assert result.success
    for table, rows in before.items():
        after = lake.lake_rows(run.lake_dir, table, day)
        # rows archived meanwhile by other writers would show up; this run's bank is complete and quiet
        key = "bank_id"
        assert after.filter(pa.compute.equal(after[key], run.bank)).equals(
            rows.filter(pa.compute.equal(rows[key], run.bank))), table
    files_after = sorted(p.relative_to(run.lake_dir) for p in lake.partition_dir(run.lake_dir, "transactions", day)
                         .rglob("*.parquet"))
    assert set(files_before) <= set(files_after)  # same layout, no leftover temp folders
    assert not list(lake.partition_dir(run.lake_dir, "transactions", day).parent.glob(".date=*"))


def _bad_rows(good: pa.Table) -> pa.Table:
    rows = good.slice(0, 3).to_pylist()
    rows[0]["transaction_id"] = None  # null id
    rows[1]["transaction_id"] = "injected-negative-amount"
    rows[1]["amount_minor"] = -500  # negative amount
    # rows[2] keeps its id: a duplicate of an archived transaction
    return pa.Table.from_pylist(rows, schema=good.schema)


def test_expectations_catch_injected_bad_rows_and_block_the_lake(run):
    day = run.days[-1]
    staged = lake.staged(run.lake_dir, "transactions", day)
    lake_before = lake.lake_rows(run.lake_dir, "transactions", day)
    mtimes = {p: p.stat().st_mtime_ns for p in lake.partition_dir(run.lake_dir, "transactions", day).rglob("*.parquet")}
    bad = pa.concat_tables([staged, _bad_rows(staged)])
    pq.write_table(bad, lake.staged_path(run.lake_dir, "transactions", day), compression="zstd")
    # the checks and the lake, not the extract (which would overwrite the injected rows)
    selection = dg.AssetSelection.assets(*assets.LAKE.values()) | dg.AssetSelection.checks_for_assets(
        *assets.STAGED.values())
    result = run.materialize_partition(day, selection=selection)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evaluations["transactions_expectations"]
    assert not check.passed
    failed = {(f["expectation"], f["column"]) for f in check.metadata["failed"].value}
    assert ("expect_column_values_to_not_be_null", "transaction_id") in failed
    assert ("expect_column_values_to_be_between", "amount_minor") in failed
    assert ("expect_column_values_to_be_unique", "transaction_id") in failed
    assert check.metadata["failed_expectations"].value == 3
    # blocked: nothing of the lake partition was rewritten
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key in assets.LAKE.values()]
    assert lake.lake_rows(run.lake_dir, "transactions", day).equals(lake_before)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # a fresh extract heals the partition
    assert run.materialize_partition(day).success


def _norm(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(UTC)
    return v


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@pytest.mark.parametrize("mart", [m.name for m in lake.marts()])
def test_mart_equals_the_same_query_on_postgresql(run, mart):
    sql = next(m.sql for m in lake.marts() if m.name == mart)
    duck_cols, duck_rows = lake.query(run.store.database_file, f"SELECT * FROM marts.{mart}")
    start, end = lake.partition_bounds(min(run.days))[0], lake.partition_bounds(max(run.days))[1]
    with psycopg.connect(run.settings.postgres_dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        # the lake's partitions as PostgreSQL sees them: temp tables shadow the archive for this session
        # (with the lake's partition column `date`: the transaction's UTC event date)
        conn.execute("CREATE TEMP TABLE transactions AS SELECT *, (event_time AT TIME ZONE 'UTC')::date AS date "
                     "FROM public.transactions WHERE event_time >= %s AND event_time < %s", (start, end))
        conn.execute("CREATE TEMP TABLE alerts AS SELECT * FROM public.alerts "
                     "WHERE event_time >= %s AND event_time < %s", (start, end))
        conn.execute("CREATE TEMP TABLE fraud_labels AS SELECT l.* FROM public.fraud_labels l "
                     "JOIN transactions t USING (transaction_id)")
        cur = conn.execute(sql)
        pg_cols = [d.name for d in cur.description]
        pg_rows = cur.fetchall()
    assert duck_cols == pg_cols
    mine_pg = sorted(([_norm(v) for v in r] for r in pg_rows), key=lambda r: [str(v) for v in r[:3]])
    mine_duck = sorted(([_norm(v) for v in r] for r in duck_rows), key=lambda r: [str(v) for v in r[:3]])
    assert len(mine_duck) == len(mine_pg) > 0 or mart in ("rule_performance", "alert_latency")
    for d_row, p_row in zip(mine_duck, mine_pg, strict=True):
        assert all(_same(a, b) for a, b in zip(d_row, p_row, strict=True)), (mart, d_row, p_row)


def test_dashboard_history_reads_the_lake_like_postgresql(run, monkeypatch):
    start, end = lake.partition_bounds(min(run.days))[0], lake.partition_bounds(max(run.days))[1]
    period = dash.Period(start, end, run.bank)
    with psycopg.connect(run.settings.postgres_dsn, autocommit=True) as conn:
        from_pg = (dash.daily_volumes(conn, period), dash.alert_rate_by(conn, "channel", period),
                   dash.rule_hits_per_day(conn, period))
        monkeypatch.setenv(dash.LAKE_ENV, str(run.store.database_file))
        assert isinstance(dash.history_source(conn), dash.DuckDBSource)
        from_lake = (dash.daily_volumes(conn, period), dash.alert_rate_by(conn, "channel", period),
                     dash.rule_hits_per_day(conn, period))
    assert from_lake[0] and from_lake[0][0]["transactions"] > 0
    for pg, dk in zip(from_pg, from_lake, strict=True):
        assert len(pg) == len(dk)
        for a, b in zip(pg, dk, strict=True):
            assert a.keys() == b.keys()
            assert all(_same(_norm(a[k]), _norm(b[k])) for k in a), (a, b)


def test_sql_command_and_database_errors_are_clear(run, tmp_path):
    names, rows = lake.query(run.store.database_file, "SELECT count(*) AS n FROM transactions WHERE bank_id = $b",
                             {"b": run.bank})
    assert names == ["n"] and rows[0][0] == run.produced.delivered
    with pytest.raises(FileNotFoundError, match="rtfd lake build"):
        lake.query(tmp_path / "missing.duckdb", "SELECT 1")


def test_sensor_requests_the_partitions_of_new_archive_rows(run):
    from orchestration.lake.automation import new_archive_data

    with dg.build_sensor_context(resources=run.resources) as context:
        requests = new_archive_data(context)
        assert {r.partition_key for r in requests} >= {d.isoformat() for d in run.days}
        cursor = context.cursor
    with dg.build_sensor_context(cursor=cursor, resources=run.resources) as context:
        again = new_archive_data(context)
        # nothing archived since (or only other tests' rows): this run's partitions are not requested again
        assert isinstance(again, dg.SkipReason) or all(r.run_key.split("@")[1] != cursor for r in again)


def test_parallel_extract_reads_the_partition_in_one_snapshot(run):
    """The transactions are read as time slices over parallel connections: together they are exactly the
    single-connection extract, and each slice sees the leader's exported snapshot, not rows committed since."""
    dsn, day = run.store.dsn, run.days[-1]  # Dagster's read-only role

    def mine(data: dict[str, pa.Table], table: str) -> set[str]:
        rows = data[table]
        return set(rows.filter(pa.compute.equal(rows["bank_id"], run.bank))[PRIMARY_KEYS[table]].to_pylist())

    one, sliced = lake.extract(dsn, day, workers=1), lake.extract(dsn, day, workers=3)
    for table in SCHEMAS:
        assert mine(sliced, table) == mine(one, table), table
        assert sliced[table].schema == SCHEMAS[table]
    start, end = lake.partition_bounds(day)
    slices = lake._time_slices(start, end, 3)
    assert slices[0][0] == start and slices[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))

    late_id = f"{run.bank}-committed-after-the-snapshot"
    with (psycopg.connect(dsn, autocommit=True) as leader,
          psycopg.connect(run.settings.postgres_dsn, autocommit=True) as writer):
        leader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = leader.execute("SELECT pg_export_snapshot()").fetchone()[0]
        columns = ", ".join(c for c in SCHEMAS["transactions"].names if c != "transaction_id")
        writer.execute(f"INSERT INTO transactions (transaction_id, {columns}) SELECT %s, {columns} "
                       "FROM transactions WHERE bank_id = %s AND event_time >= %s AND event_time < %s LIMIT 1",
                       (late_id, run.bank, start, end))
        try:
            seen = lake._read_slice(dsn, snapshot, "transactions", start, end)["transaction_id"].to_pylist()
            fresh = lake.extract(dsn, day, tables=("transactions",))["transactions"]["transaction_id"].to_pylist()
        finally:
            writer.execute("DELETE FROM transactions WHERE transaction_id = %s", (late_id,))
            leader.execute("ROLLBACK")
    assert late_id not in seen and late_id in fresh
