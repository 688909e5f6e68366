"""Assets of the lake, in the order data flows: staged extract -> lake partition -> DuckDB marts.

staged_* (daily partitions by UTC event date): the archive's rows of one day, read in one snapshot.
lake_*   (same partitions): the staged rows published as hive-partitioned Parquet, once the blocking checks
          on the staged extract passed (checks.py).
marts/*  (unpartitioned): the DuckDB database rebuilt from the whole lake; one asset per SQL file in
          warehouse/marts/.
"""

import time

import dagster as dg

from orchestration.resources import LakeResource
from warehouse import lake
from warehouse.config import LakeSettings
from warehouse.tables import TABLES

daily = dg.DailyPartitionsDefinition(
    start_date=LakeSettings().start_date.isoformat(), timezone="UTC", end_offset=1  # today's partition grows
)
RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)

STAGED = {t: dg.AssetKey(f"staged_{t}") for t in TABLES}
LAKE = {t: dg.AssetKey(f"lake_{t}") for t in TABLES}
MARTS = {m.name: dg.AssetKey(["marts", m.name]) for m in lake.marts()}


def _preview(rows, n: int = 5) -> dg.MetadataValue:
    if rows.num_rows == 0:
        return dg.MetadataValue.md("(no rows)")
    return dg.MetadataValue.md(rows.slice(0, n).to_pandas().to_markdown(index=False))


@dg.multi_asset(
    specs=[dg.AssetSpec(STAGED[t], description=f"The archive's {t} of one UTC event date, staged as Parquet "
                        "for validation.", group_name="extract", kinds={"postgres", "parquet"}) for t in TABLES],
    partitions_def=daily,
    retry_policy=RETRY,
    name="archive_extract",
)
def archive_extract(context: dg.AssetExecutionContext, lake_store: LakeResource):
    """Extract one event date of transactions, alerts and fraud labels from PostgreSQL (ADBC, one snapshot)."""
    day = lake.parse_partition(context.partition_key)
    started = time.perf_counter()
    data = lake.extract(lake_store.dsn, day)
    seconds = time.perf_counter() - started
    paths = lake.stage(lake_store.lake, day, data)
    for table, rows in data.items():
        yield dg.MaterializeResult(
            asset_key=STAGED[table],
            metadata={
                "dagster/row_count": rows.num_rows,
                "path": dg.MetadataValue.path(str(paths[table])),
                "extract_seconds": round(seconds, 3),
                "rows_per_second": round(rows.num_rows / seconds) if seconds else None,
                "preview": _preview(rows),
            },
        )


@dg.multi_asset(
    specs=[dg.AssetSpec(LAKE[t], deps=[STAGED[t]], description=f"{t} in the Parquet lake: "
                        f"{t}/date=YYYY-MM-DD/bank=<bank>/part-0.parquet (zstd).", group_name="lake",
                        kinds={"parquet"}) for t in TABLES],
    partitions_def=daily,
    name="lake_partition",
)
def lake_partition(context: dg.AssetExecutionContext, lake_store: LakeResource):
    """Publish the validated staged partition into the lake (the partition folder is swapped in whole)."""
    day = lake.parse_partition(context.partition_key)
    for table in TABLES:
        counts = lake.publish(lake_store.lake, table, day, lake.staged(lake_store.lake, table, day))
        yield dg.MaterializeResult(
            asset_key=LAKE[table],
            metadata={
                "dagster/row_count": sum(counts.values()),
                "rows_per_bank": dg.MetadataValue.json(counts),
                "path": dg.MetadataValue.path(str(lake.partition_dir(lake_store.lake, table, day))),
            },
        )


@dg.multi_asset(
    specs=[dg.AssetSpec(MARTS[m.name], deps=list(LAKE.values()), description=m.description, group_name="marts",
                        kinds={"duckdb"}) for m in lake.marts()],
    retry_policy=RETRY,
    name="duckdb_marts",
)
def duckdb_marts(context: dg.AssetExecutionContext, lake_store: LakeResource):
    """Rebuild the DuckDB database: views over the whole lake and every mart of warehouse/marts/*.sql."""
    report = lake.build_database(lake_store.lake, lake_store.database_file)
    for name, info in report.items():
        _columns, preview = lake.query(lake_store.database_file, f"SELECT * FROM marts.{name} LIMIT 5")
        yield dg.MaterializeResult(
            asset_key=MARTS[name],
            metadata={
                "dagster/row_count": info["rows"],
                "build_seconds": round(info["seconds"], 3),
                "database": dg.MetadataValue.path(str(lake_store.database_file)),
                "preview": dg.MetadataValue.md("\n".join(str(r) for r in preview) or "(no rows)"),
            },
        )
