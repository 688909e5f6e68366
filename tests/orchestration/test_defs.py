"""The Dagster Definitions load (as the webserver and daemon load them) and their schedules pick the right
partitions. Pure: no stack, no database."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import dagster as dg
import pytest

warnings.filterwarnings("ignore", module="dagster")

from orchestration.definitions import defs  # noqa: E402
from orchestration.lake import automation, checks  # noqa: E402
from warehouse import lake  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def test_definitions_load_with_every_asset_check_job_schedule_and_sensor():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    tables = ("transactions", "alerts", "fraud_labels")
    assert {f"staged_{t}" for t in tables} | {f"lake_{t}" for t in tables} <= keys
    mart_files = {m.name for m in lake.marts()}
    assert mart_files == {"daily_kpis", "merchant_risk", "terminal_risk", "customer_profiles", "rule_performance",
                          "alert_latency"}
    assert {f"marts/{m}" for m in mart_files} <= keys
    for name in ("lake_partition_job", "marts_job"):
        assert defs.resolve_job_def(name) is not None
    assert {s.name for s in automation.SCHEDULES} == {"hourly_today", "daily_yesterday"}
    assert {s.name for s in automation.SENSORS} == {"new_archive_data", "marts_after_lake"}


def test_validation_suites_are_blocking_checks_on_the_staged_extract():
    specs = {spec.name: spec for c in checks.CHECKS for spec in c.check_specs}
    assert specs["transactions_expectations"].blocking
    assert specs["alerts_expectations"].blocking
    assert not specs["alerts_reference_archived_transactions"].blocking  # a warning (see checks.py)
    assert specs["transactions_expectations"].asset_key == dg.AssetKey("staged_transactions")


def test_lake_partitions_follow_every_staged_table():
    graph = defs.resolve_asset_graph()
    for table in ("transactions", "alerts", "fraud_labels"):
        parents = graph.get(dg.AssetKey(f"lake_{table}")).parent_keys
        assert dg.AssetKey(f"staged_{table}") in parents


def test_hourly_schedule_rebuilds_today_and_daily_schedule_yesterday():
    at = datetime(2026, 3, 5, 0, 30, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=at) as context:
        assert automation.hourly_today(context).partition_key == "2026-03-05"
        assert automation.daily_yesterday(context).partition_key == "2026-03-04"


def test_a_bad_partition_key_is_named_in_the_error():
    with pytest.raises(ValueError, match="'2026-13-01' is not a date"):
        lake.parse_partition("2026-13-01")
