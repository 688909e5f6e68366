"""The lakehouse's data side: the archive's columnar contract, extract to Parquet, the DuckDB database with its
views and marts (SQL files in marts/) and the Great Expectations suites (expectations/*.json).

Dagster (orchestration/) schedules these functions; `rtfd lake build`, `rtfd sql` and the benchmark call them
directly. Nothing here imports Dagster.
"""

from pathlib import Path

WAREHOUSE_DIR = Path(__file__).resolve().parent
MARTS_DIR = WAREHOUSE_DIR / "marts"
EXPECTATIONS_DIR = WAREHOUSE_DIR / "expectations"
