"""When the lake refreshes: jobs, schedules (hourly for today, daily for yesterday) and sensors (new archive
rows -> their partitions; a finished partition run -> the marts)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.lake.assets import daily
from orchestration.resources import LakeResource
from warehouse import lake
from warehouse.config import LakeSettings

# RTFD_LAKE_AUTOMATION=false leaves schedules and sensors off (the UI can still switch them on), e.g. on CI
AUTOMATION = LakeSettings().automation
SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if AUTOMATION else dg.DefaultSensorStatus.STOPPED
SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if AUTOMATION else dg.DefaultScheduleStatus.STOPPED

lake_partition_job = dg.define_asset_job(
    "lake_partition_job",
    selection=dg.AssetSelection.groups("extract", "lake"),  # daily partitions, from the assets
    description="Extract one event date from the archive, validate it, publish it to the Parquet lake.",
)
marts_job = dg.define_asset_job(
    "marts_job", selection=dg.AssetSelection.groups("marts"), description="Rebuild the DuckDB views and marts."
)


@dg.schedule(job=lake_partition_job, cron_schedule="7 * * * *", execution_timezone="UTC",
             default_status=SCHEDULE_STATUS)
def hourly_today(context: dg.ScheduleEvaluationContext):
    """Every hour: today's partition again (today's archive keeps growing)."""
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return dg.RunRequest(run_key=f"hourly-{context.scheduled_execution_time.isoformat()}", partition_key=day)


@dg.schedule(job=lake_partition_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
             default_status=SCHEDULE_STATUS)
def daily_yesterday(context: dg.ScheduleEvaluationContext):
    """Every night: yesterday's partition, now complete (late events included)."""
    day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)


@dg.sensor(job=lake_partition_job, minimum_interval_seconds=300, default_status=SENSOR_STATUS)
def new_archive_data(context: dg.SensorEvaluationContext, lake_store: LakeResource):
    """Rows archived since the last tick (by processed_at) -> a run for each event date they belong to.
    Every 5 minutes at most: each run re-extracts a whole day, which is cheap but not free on 2 cores."""
    since = datetime.fromisoformat(context.cursor) if context.cursor else None
    newest = lake.latest_processed_at(lake_store.dsn)
    if newest is None or (since is not None and newest <= since):
        return dg.SkipReason("no rows archived since the last tick")
    first = daily.start.date() if hasattr(daily.start, "date") else daily.start
    dates = [d for d in lake.archive_dates(lake_store.dsn, since) if d >= first]
    context.update_cursor(newest.isoformat())
    if not dates:
        return dg.SkipReason("new rows only before the first partition")
    return [dg.RunRequest(run_key=f"{d.isoformat()}@{newest.isoformat()}", partition_key=d.isoformat())
            for d in dates]


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[lake_partition_job],
                      request_job=marts_job, default_status=SENSOR_STATUS)
def marts_after_lake(context: dg.RunStatusSensorContext):
    """A lake partition was published: rebuild the marts over the whole lake."""
    return dg.RunRequest(run_key=f"marts-after-{context.dagster_run.run_id}")


JOBS = [lake_partition_job, marts_job]
SCHEDULES = [hourly_today, daily_yesterday]
SENSORS = [new_archive_data, marts_after_lake]
