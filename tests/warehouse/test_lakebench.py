"""`rtfd lake bench` on the session stack's real PostgreSQL: it measures every stage over its own synthetic
rows, a `--keep` run's rows are reused by the next run of the same size, and nothing of it stays behind."""

from __future__ import annotations

import psycopg
import pytest

from rtfd import lakebench
from warehouse import synth

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]


def bench_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE 'lakebench-%'").fetchone()[0]


def test_lake_bench_measures_reuses_kept_rows_and_cleans_up(stack):
    dsn, said = stack.postgres_dsn, []
    try:
        kept = lakebench.run(stack, rows=3000, days=2, keep=True, say=said.append)
        assert kept["insert_s"] is not None and kept["extracted"] == 3000
        assert kept["extract_rows_per_s"] > 0 and kept["parquet_rows_per_s"] > 0
        assert set(kept["marts"]) == {"alert_latency", "customer_profiles", "daily_kpis", "merchant_risk",
                                      "rule_performance", "terminal_risk"}
        assert bench_rows(dsn) == 3000
        again = lakebench.run(stack, rows=3000, days=2, keep=False, say=said.append)
        assert again["insert_s"] is None and again["extracted"] == 3000  # reused, not inserted twice
        assert any("reusing the 3,000 rows" in line for line in said)
        assert bench_rows(dsn) == 0
    finally:
        synth.delete(dsn, lakebench.PREFIX)  # also when a check above failed: the lake tests share the archive
