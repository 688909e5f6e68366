"""Archive -> Parquet lake -> DuckDB: the three moves of the lakehouse, as plain functions.

extract():        one event-date partition of every archive table, in one REPEATABLE READ snapshot, through
                  ADBC (PostgreSQL's COPY binary straight into Arrow; no row-by-row Python), the transactions
                  as time slices over parallel connections that share that snapshot.
stage()/staged(): the extract as one Parquet file per table and partition, which the validation reads
                  before anything enters the lake.
publish():        the staged partition into the lake, hive-partitioned <table>/date=D/bank=B/part-0.parquet
                  (zstd), rows sorted by primary key; the partition folder is swapped in whole, so a rewrite
                  is idempotent and readers never see half a partition.
build_database(): a fresh DuckDB file (views over the lake + the marts of warehouse/marts/*.sql) renamed
                  over the old one, so the dashboard's and analysts' readers never meet a write lock.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse import MARTS_DIR
from warehouse.config import LakeSettings
from warehouse.tables import EXTRACT_SQL, PRIMARY_KEYS, SCHEMAS, TABLES, conform

STAGING = "_staging"
COMPRESSION = "zstd"


def partition_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, dtime(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def parse_partition(key: str) -> date:
    """A partition key (YYYY-MM-DD) as a date, or a clear error naming the bad key."""
    try:
        return date.fromisoformat(key)
    except ValueError:
        raise ValueError(f"partition {key!r} is not a date in YYYY-MM-DD form") from None


# --- extract -------------------------------------------------------------------------------------------------------
def extract(dsn: str, day: date, tables: tuple[str, ...] = TABLES, workers: int | None = None) -> dict[str, pa.Table]:
    """Every table's rows of one event date, read in one snapshot so alerts and labels match the transactions.

    PostgreSQL writes COPY output on one core per connection, and the driver decodes it on one thread per
    connection, each at a few hundred thousand rows/s: so the transactions (nearly all the bytes) are read as
    `workers` time slices over parallel connections that import the first connection's exported snapshot
    (what `pg_dump --jobs` does), and the partition stays one consistent read."""
    import adbc_driver_postgresql.dbapi as adbc

    workers = workers or LakeSettings().extract_workers
    start, end = partition_bounds(day)
    out: dict[str, pa.Table] = {}
    with adbc.connect(dsn) as conn, conn.cursor() as cur, ThreadPoolExecutor(workers) as pool:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT pg_export_snapshot()")
        snapshot = cur.fetchone()[0]
        sliced = {}
        if "transactions" in tables and workers > 1:
            sliced["transactions"] = [pool.submit(_read_slice, dsn, snapshot, "transactions", a, b)
                                      for a, b in _time_slices(start, end, workers)]
        for table in tables:
            if table not in sliced:
                out[table] = _read(cur, table, start, end)
        for table, parts in sliced.items():
            out[table] = pa.concat_tables(part.result() for part in parts)
        conn.rollback()
    return {table: out[table] for table in tables}


def _time_slices(start: datetime, end: datetime, n: int) -> list[tuple[datetime, datetime]]:
    step = (end - start) / n
    bounds = [start + step * i for i in range(n)] + [end]
    return list(zip(bounds, bounds[1:], strict=False))


def _read(cur, table: str, start: datetime, end: datetime) -> pa.Table:
    if not _table_exists(cur, table):  # fraud_labels arrives with migration 0004
        return SCHEMAS[table].empty_table()
    cur.execute(EXTRACT_SQL[table], (start.isoformat(), end.isoformat()))
    return conform(table, cur.fetch_arrow_table())


def _read_slice(dsn: str, snapshot: str, table: str, start: datetime, end: datetime) -> pa.Table:
    """One slice of a table, on a connection of its own that sees exactly the exporting transaction's snapshot."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # an id PostgreSQL generated, not user input
        rows = _read(cur, table, start, end)
        conn.rollback()
    return rows


def _table_exists(cur, table: str) -> bool:
    cur.execute("SELECT to_regclass($1) IS NOT NULL", (table,))
    return bool(cur.fetchone()[0])


def archive_dates(dsn: str, since: datetime | None = None) -> dict[date, int]:
    """Event dates with rows archived (processed) after `since` (default: all), and how many rows each."""
    import psycopg

    sql = "SELECT (event_time AT TIME ZONE 'UTC')::date AS day, count(*) FROM transactions"
    params: tuple = ()
    if since is not None:
        sql += " WHERE processed_at > %s"
        params = (since,)
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(sql + " GROUP BY 1 ORDER BY 1", params).fetchall())


def latest_processed_at(dsn: str) -> datetime | None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT max(processed_at) FROM transactions").fetchone()[0]


# --- stage ---------------------------------------------------------------------------------------------------------
def staged_path(lake: Path, table: str, day: date) -> Path:
    return lake / STAGING / table / f"date={day.isoformat()}.parquet"


def stage(lake: Path, day: date, data: dict[str, pa.Table]) -> dict[str, Path]:
    paths = {}
    for table, rows in data.items():
        path = staged_path(lake, table, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        pq.write_table(rows, tmp, compression=COMPRESSION)
        os.replace(tmp, path)
        paths[table] = path
    return paths


def staged(lake: Path, table: str, day: date) -> pa.Table:
    path = staged_path(lake, table, day)
    if not path.exists():
        raise FileNotFoundError(f"no staged extract of {table} for {day}: materialize the extract first ({path})")
    return pq.read_table(path).cast(SCHEMAS[table])


# --- publish -------------------------------------------------------------------------------------------------------
def partition_dir(lake: Path, table: str, day: date) -> Path:
    return lake / table / f"date={day.isoformat()}"


def publish(lake: Path, table: str, day: date, rows: pa.Table) -> dict[str, int]:
    """Write one table's partition as date=D/bank=B/part-0.parquet; returns rows per bank."""
    key = PRIMARY_KEYS[table]
    rows = rows.sort_by([("bank_id", "ascending"), (key, "ascending")])
    target = partition_dir(lake, table, day)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.new-{uuid.uuid4().hex[:8]}")
    counts: dict[str, int] = {}
    for bank in pc.unique(rows["bank_id"]).to_pylist():
        part = rows.filter(pc.equal(rows["bank_id"], bank))
        folder = fresh / f"bank={bank}"
        folder.mkdir(parents=True)
        pq.write_table(part, folder / "part-0.parquet", compression=COMPRESSION)
        counts[bank] = part.num_rows
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    if counts:
        os.replace(fresh, target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(fresh, ignore_errors=True)
    return counts


def lake_rows(lake: Path, table: str, day: date) -> pa.Table:
    """One published partition read back (for checks and tests), in the lake's schema."""
    folder = partition_dir(lake, table, day)
    files = sorted(folder.glob("bank=*/part-0.parquet"))
    if not files:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables(pq.read_table(f).cast(SCHEMAS[table]) for f in files)


def lake_partitions(lake: Path, table: str = "transactions") -> list[date]:
    return sorted(date.fromisoformat(p.name.removeprefix("date=")) for p in (lake / table).glob("date=*"))


# --- DuckDB --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mart:
    name: str
    sql: str
    description: str

    @classmethod
    def load(cls, path: Path) -> Mart:
        sql = path.read_text()
        first = sql.splitlines()[0]
        return cls(path.stem, sql, first.removeprefix("--").strip())


def marts() -> list[Mart]:
    return [Mart.load(p) for p in sorted(MARTS_DIR.glob("*.sql"))]


def connect(database: Path, read_only: bool = True):
    """A DuckDB connection in UTC (the lake's timestamps are UTC; event dates are UTC days)."""
    import duckdb

    con = duckdb.connect(str(database), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


def create_views(con, lake: Path) -> None:
    """One view per table over its Parquet files (hive columns: `date`; `bank` repeats bank_id and is left out).
    A table with no files yet becomes an empty table of the right columns, so queries and marts still run."""
    for table in TABLES:
        pattern = lake / table / "date=*" / "bank=*" / "*.parquet"
        con.execute(f"DROP VIEW IF EXISTS {table}")
        con.execute(f"DROP TABLE IF EXISTS {table}")
        if any((lake / table).glob("date=*/bank=*/*.parquet")):
            con.execute(
                f"CREATE VIEW {table} AS SELECT * EXCLUDE (bank) FROM read_parquet('{pattern}', "
                "hive_partitioning = true, hive_types = {'date': DATE, 'bank': VARCHAR})"
            )
        else:
            empty = SCHEMAS[table].empty_table()  # noqa: F841 - read by DuckDB's replacement scan
            con.execute(f"CREATE TABLE {table} AS SELECT *, NULL::DATE AS date FROM empty")


def build_database(lake: Path, database: Path, only: list[str] | None = None) -> dict[str, dict]:
    """Create the DuckDB file anew (views + every mart as a table in schema `marts`) and swap it in.
    Returns per mart: rows and seconds."""
    database.parent.mkdir(parents=True, exist_ok=True)
    tmp = database.with_name(f".{database.name}.{uuid.uuid4().hex[:8]}")
    report: dict[str, dict] = {}
    con = connect(tmp, read_only=False)
    try:
        create_views(con, lake)
        con.execute("CREATE SCHEMA marts")
        for mart in marts():
            if only is not None and mart.name not in only:
                continue
            started = time.perf_counter()
            con.execute(f"CREATE TABLE marts.{mart.name} AS {mart.sql.rstrip().rstrip(';')}")
            con.execute(f"COMMENT ON TABLE marts.{mart.name} IS '{mart.description.replace(chr(39), chr(39) * 2)}'")
            rows = con.execute(f"SELECT count(*) FROM marts.{mart.name}").fetchone()[0]
            report[mart.name] = {"rows": rows, "seconds": time.perf_counter() - started}
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, database)
    tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return report


def query(database: Path, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
    """Run one statement on the database read-only; returns column names and rows."""
    if not database.exists():
        raise FileNotFoundError(f"no lake database at {database}: run `rtfd lake build` first")
    con = connect(database)
    try:
        cur = con.execute(sql, params or {})
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall() if cur.description else []
    finally:
        con.close()
