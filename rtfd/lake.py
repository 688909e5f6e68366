"""`rtfd lake build|bench|path` and `rtfd sql`: the lakehouse from the command line.

`lake build` materializes the same Dagster assets the daemon schedules (recorded in the state folder's
Dagster instance, so the runs show in the UI), partition by partition, then the marts. `sql` runs one
statement on the DuckDB database read-only.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from datetime import date

import click

from rtfd.config import Settings

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _quiet() -> None:
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def build(settings: Settings, partitions: list[date] | None, say=click.echo, marts: bool = True, resources=None):
    """Materialize extract -> checks -> lake for each partition (default: every event date in the archive),
    then the marts. Returns (partition -> run success, whether the marts succeeded)."""
    _quiet()
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.instance import instance
    from orchestration.lake import assets, checks
    from orchestration.resources import LakeResource
    from warehouse import lake
    from warehouse.config import LakeSettings

    resources = resources or {"lake_store": LakeResource(state_dir=str(settings.state_dir),
                                                        port_offset=settings.port_offset)}
    store = resources["lake_store"]
    if partitions is None:
        first = LakeSettings().start_date
        found = lake.archive_dates(store.dsn)
        partitions = [d for d in found if d >= first]
        skipped = [d for d in found if d < first]
        if skipped:
            say(f"skipping {len(skipped)} event date(s) before RTFD_LAKE_START_DATE={first}")
        if not partitions:
            say("the archive has no transactions to build from")
    inst = instance(settings)
    outcome = {}
    for i, day in enumerate(partitions, 1):
        started = time.monotonic()
        say(f"[{i}/{len(partitions)}] {day}: extract, validate, publish ...")
        result = dg.materialize(
            [assets.archive_extract, assets.lake_partition, *checks.CHECKS], partition_key=day.isoformat(),
            resources=resources, instance=inst, run_config=QUIET_LOGS, raise_on_error=False,
            tags={"rtfd/launched_by": "rtfd lake build"},
        )
        rows = {e.asset_key.to_user_string(): e.materialization.metadata.get("dagster/row_count")
                for e in result.get_asset_materialization_events()}
        for ev in result.get_asset_check_evaluations():
            mark = "passed" if ev.passed else "FAILED"
            say(f"    check {ev.check_name}: {mark}" + ("" if ev.passed else f" - {ev.description}"))
        published = rows.get("lake_transactions")
        if result.success and published is not None:
            say(f"    published {published.value:,} transactions in {time.monotonic() - started:.1f}s")
        else:
            say(f"    NOT published (run {result.run_id}); see the Dagster UI or the check results above")
        outcome[day] = bool(result.success and published is not None)
    marts_ok = None
    if marts:
        started = time.monotonic()
        say("marts: rebuilding the DuckDB database ...")
        result = dg.materialize([assets.duckdb_marts], resources=resources, instance=inst, run_config=QUIET_LOGS,
                                raise_on_error=False, tags={"rtfd/launched_by": "rtfd lake build"})
        marts_ok = result.success
        for ev in result.get_asset_materialization_events():
            n = ev.materialization.metadata.get("dagster/row_count")
            say(f"    {ev.asset_key.to_user_string()}: {n.value if n else '?':,} rows")
        say(f"marts: {'done' if marts_ok else 'FAILED'} in {time.monotonic() - started:.1f}s -> {store.database_file}")
    del defs  # imported so a broken Definitions fails here, as it would in the UI
    return outcome, marts_ok


@click.group("lake")
def lake_cli():
    """The lakehouse: validated Parquet lake and DuckDB marts built from the archive (Dagster assets)."""


@lake_cli.command("build")
@click.option("--partition", "partitions", multiple=True, metavar="YYYY-MM-DD",
              help="Event date to (re)build; repeat for more. Default: every date in the archive.")
@click.option("--no-marts", is_flag=True, help="Only the lake partitions, not the DuckDB marts.")
def lake_build(partitions, no_marts):
    """Extract, validate (Great Expectations) and publish partitions to the lake, then rebuild the marts."""
    from warehouse.lake import parse_partition

    try:
        days = [parse_partition(p) for p in partitions] or None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--partition") from None
    outcome, marts_ok = build(Settings(), days, marts=not no_marts)
    if not all(outcome.values()) or marts_ok is False:
        sys.exit(1)


@lake_cli.command("path")
def lake_path():
    """Print the lake folder and the DuckDB database file."""
    from warehouse.config import database_path, lake_dir

    settings = Settings()
    click.echo(f"lake:     {lake_dir(settings)}\ndatabase: {database_path(settings)}")


@lake_cli.command("bench")
@click.option("--rows", type=click.IntRange(min=1000), default=1_000_000, show_default=True,
              help="Synthetic archive rows to insert (COPY), extract, write and aggregate.")
@click.option("--days", type=click.IntRange(1, 60), default=3, show_default=True, help="Event dates they span.")
@click.option("--keep", is_flag=True,
              help="Keep the synthetic rows in PostgreSQL; a later run of the same size reuses them.")
def lake_bench(rows, days, keep):
    """Measure archive -> Parquet -> marts on synthetic rows: extract rows/s, Parquet rows/s, marts seconds."""
    from rtfd.lakebench import run

    run(Settings(), rows, days, keep, say=click.echo)


@click.command("sql")
@click.argument("statement")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of an aligned table.")
@click.option("--limit", type=int, default=200, show_default=True, help="Rows printed at most (0 = all).")
def sql(statement, as_csv, limit):
    """Run one SQL statement on the lake's DuckDB database (read-only): views transactions, alerts,
    fraud_labels and tables marts.* (daily_kpis, merchant_risk, terminal_risk, customer_profiles,
    rule_performance, alert_latency)."""
    import csv

    from warehouse.config import database_path
    from warehouse.lake import query

    try:
        names, rows = query(database_path(Settings()), statement)
    except FileNotFoundError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - DuckDB's own message names the problem
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    shown = rows if not limit else rows[:limit]
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(shown)
    else:
        cells = [[("" if v is None else str(v)) for v in r] for r in shown]
        widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
        click.echo("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
        for r in cells:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    if limit and len(rows) > limit:
        click.echo(f"({len(rows) - limit} more rows; --limit 0 shows all)", err=True)
