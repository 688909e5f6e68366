"""`rtfd lake bench`: archive -> Parquet -> marts on N synthetic rows, measured stage by stage.

Rows are COPYed into the stack's archive under a run prefix (event dates far in the past, so they never mix
with live data), extracted partition by partition through the same functions the Dagster assets call,
written to a lake folder of the run's own, aggregated into every mart, then deleted again, unless --keep:
then a later run of the same size reuses them and measures without the (long) insert.
Validation (Great Expectations) is not part of the figures: it is measured by the tests' runtime only.

Beside wall time, every stage reports the CPU seconds it used (this process, plus the PostgreSQL backends for
the extract): on a shared machine wall time measures the neighbours too, CPU seconds much less so.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from rtfd.config import Settings

FIRST_DAY = date(2026, 2, 1)  # a synthetic month of its own, after RTFD_LAKE_START_DATE's default
PREFIX = "lakebench"


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _postgres_cpu(settings: Settings) -> float | None:
    """CPU seconds the stack's PostgreSQL used so far: the postmaster, its live backends and the ones that exited
    (reaped, so in its children's times). None for a PostgreSQL the stack does not run (RTFD_PG_DSN)."""
    import psutil

    from rtfd.stack.postgres import PrivatePostgres

    pid = PrivatePostgres(settings).process().pid if settings.managed_postgres else None
    if pid is None:
        return None
    try:
        master = psutil.Process(pid)
        total = sum(master.cpu_times()[:4])
        for child in master.children():
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass  # exited meanwhile: its time is in the postmaster's children times now
        return total
    except psutil.Error:
        return None


def _kept_rows(dsn: str, prefix: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE %s",
                            (f"{prefix}-%",)).fetchone()[0]


def run(settings: Settings, rows: int, days: int, keep: bool, say=print) -> dict:
    from warehouse import lake, synth

    dsn = settings.postgres_dsn
    prefix = f"{PREFIX}-{rows}x{days}"
    work = Path(tempfile.mkdtemp(prefix="rtfd-lakebench-"))
    result: dict = {"rows": rows, "days": days, "cpus": os.cpu_count()}
    try:
        if _kept_rows(dsn, prefix) == rows:
            dates = [FIRST_DAY + timedelta(days=i) for i in range(days)]
            result["insert_s"] = None
            say(f"reusing the {rows:,} rows an earlier `--keep` run left ({prefix}-*)")
        else:
            synth.delete(dsn, PREFIX)  # a partial or other-sized earlier run would share the event dates
            started = time.perf_counter()
            dates = synth.insert(dsn, rows, prefix, FIRST_DAY, days=days, say=say)
            result["insert_s"] = time.perf_counter() - started
            say(f"inserted {rows:,} rows in {result['insert_s']:.1f}s (COPY)")
        extract_s = write_s = extract_cpu = write_cpu = 0.0
        extracted = 0
        for day in dates:
            t0, c0, p0 = time.perf_counter(), _own_cpu(), _postgres_cpu(settings)
            data = lake.extract(dsn, day)
            t1, c1, p1 = time.perf_counter(), _own_cpu(), _postgres_cpu(settings)
            lake.stage(work, day, data)
            for table, table_rows in data.items():
                lake.publish(work, table, day, table_rows)
            t2, c2 = time.perf_counter(), _own_cpu()
            n = data["transactions"].num_rows
            extracted += n
            extract_s += t1 - t0
            write_s += t2 - t1
            pg_cpu = (p1 - p0) if p0 is not None and p1 is not None else 0.0
            extract_cpu += (c1 - c0) + pg_cpu
            write_cpu += c2 - c1
            say(f"{day}: extract {n:,} rows in {t1 - t0:.2f}s ({n / (t1 - t0):,.0f} rows/s; CPU: client "
                f"{c1 - c0:.2f}s, PostgreSQL {pg_cpu:.2f}s), Parquet (stage + lake) in {t2 - t1:.2f}s")
        result.update(extracted=extracted, extract_s=extract_s, write_s=write_s,
                      extract_rows_per_s=extracted / extract_s, parquet_rows_per_s=extracted / write_s,
                      extract_cpu_s=extract_cpu, parquet_cpu_s=write_cpu,
                      extract_workers=lake.LakeSettings().extract_workers)
        t0, c0 = time.perf_counter(), _own_cpu()
        marts = lake.build_database(work, work / "bench.duckdb")
        result["marts_s"], result["marts_cpu_s"] = time.perf_counter() - t0, _own_cpu() - c0
        result["marts"] = {k: round(v["seconds"], 3) for k, v in marts.items()}
        result["lake_bytes"] = sum(p.stat().st_size for p in work.rglob("*.parquet") if "_staging" not in p.parts)
        say(f"marts: all {len(marts)} in {result['marts_s']:.2f}s (CPU {result['marts_cpu_s']:.1f}s) "
            + json.dumps(result["marts"]))
        say(f"summary: extract {result['extract_rows_per_s']:,.0f} rows/s (CPU {extract_cpu:.1f}s), Parquet "
            f"{result['parquet_rows_per_s']:,.0f} rows/s (CPU {write_cpu:.1f}s), marts {result['marts_s']:.2f}s "
            f"over {extracted:,} rows (CPU {result['marts_cpu_s']:.1f}s), lake {result['lake_bytes'] / 1e6:.0f} MB")
        say("json: " + json.dumps(result))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if keep:
            say(f"kept the run's rows ({prefix}-*): the next `rtfd lake bench --rows {rows} --days {days}` reuses them")
        else:
            synth.delete(dsn, PREFIX)
            say(f"deleted the run's rows ({prefix}-*)")
