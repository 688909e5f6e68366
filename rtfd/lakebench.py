"""`rtfd lake bench`: archive -> Parquet -> marts on N synthetic rows, measured stage by stage.

Rows are COPYed into the stack's archive under a run prefix (event dates far in the past, so they never mix
with live data), extracted partition by partition through the same functions the Dagster assets call,
written to a lake folder of the run's own, aggregated into every mart, then deleted again (unless --keep).
Validation (Great Expectations) is not part of the figures: it is measured by the tests' runtime only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from rtfd.config import Settings

FIRST_DAY = date(2026, 2, 1)  # a synthetic month of its own, after RTFD_LAKE_START_DATE's default


def run(settings: Settings, rows: int, days: int, keep: bool, say=print) -> dict:
    from warehouse import lake, synth

    dsn = settings.postgres_dsn
    prefix = f"lakebench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="rtfd-lakebench-"))
    result: dict = {"rows": rows, "days": days}
    try:
        started = time.perf_counter()
        dates = synth.insert(dsn, rows, prefix, FIRST_DAY, days=days, say=say)
        result["insert_s"] = time.perf_counter() - started
        say(f"inserted {rows:,} rows in {result['insert_s']:.1f}s (COPY)")
        extract_s = write_s = 0.0
        extracted = 0
        for day in dates:
            t0 = time.perf_counter()
            data = lake.extract(dsn, day)
            t1 = time.perf_counter()
            lake.stage(work, day, data)
            for table, table_rows in data.items():
                lake.publish(work, table, day, table_rows)
            t2 = time.perf_counter()
            n = data["transactions"].num_rows
            extracted += n
            extract_s += t1 - t0
            write_s += t2 - t1
            say(f"{day}: extract {n:,} rows in {t1 - t0:.2f}s ({n / (t1 - t0):,.0f} rows/s), "
                f"Parquet (stage + lake) in {t2 - t1:.2f}s")
        result.update(extracted=extracted, extract_s=extract_s, write_s=write_s,
                      extract_rows_per_s=extracted / extract_s, parquet_rows_per_s=extracted / write_s)
        t0 = time.perf_counter()
        marts = lake.build_database(work, work / "bench.duckdb")
        result["marts_s"] = time.perf_counter() - t0
        result["marts"] = {k: round(v["seconds"], 3) for k, v in marts.items()}
        result["lake_bytes"] = sum(p.stat().st_size for p in work.rglob("*.parquet") if "_staging" not in p.parts)
        say(f"marts: all {len(marts)} in {result['marts_s']:.2f}s " + json.dumps(result["marts"]))
        say(f"summary: extract {result['extract_rows_per_s']:,.0f} rows/s, Parquet "
            f"{result['parquet_rows_per_s']:,.0f} rows/s, marts {result['marts_s']:.2f}s over {extracted:,} rows, "
            f"lake {result['lake_bytes'] / 1e6:.0f} MB")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not keep:
            synth.delete(dsn, prefix)
            say(f"deleted the run's rows ({prefix}-*)")
