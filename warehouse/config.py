"""Where the lake lives: RTFD_LAKE_* settings, defaulting to folders under the stack's state folder.

<state>/lake/                  the Parquet lake (hive-partitioned: <table>/date=YYYY-MM-DD/bank=<bank>/)
<state>/lake/_staging/         one Parquet file per extracted partition, validated before it enters the lake
<state>/lake/rtfd.duckdb       views over the lake and the marts, for analysts and the dashboard
<state>/dagster/               DAGSTER_HOME: the Dagster instance (runs, events, schedules) on SQLite
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from rtfd.config import Settings


class LakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTFD_LAKE_", env_file=".env", extra="ignore")

    dir: Path | None = None
    """The lake folder; default <state>/lake."""
    database: Path | None = None
    """The DuckDB database file; default <lake>/rtfd.duckdb."""
    start_date: date = date(2026, 1, 1)
    """First daily partition Dagster offers (event dates before it are not extracted)."""
    extract_workers: int = max(2, os.cpu_count() or 2)
    """Parallel PostgreSQL connections that read one partition's transactions (time slices, one snapshot)."""
    automation: bool = True
    """Whether Dagster's schedules and sensors (new archive rows -> partition runs -> marts) start switched on."""


def lake_dir(settings: Settings, lake: LakeSettings | None = None) -> Path:
    lake = lake or LakeSettings()
    return (lake.dir or settings.state_dir / "lake").resolve()


def database_path(settings: Settings, lake: LakeSettings | None = None) -> Path:
    lake = lake or LakeSettings()
    return (lake.database or lake_dir(settings, lake) / "rtfd.duckdb").resolve()


def dagster_home(settings: Settings) -> Path:
    return (settings.state_dir / "dagster").resolve()
