"""Dagster orchestration of the lakehouse: archive -> validated Parquet lake -> DuckDB marts.

definitions.py merges one folder per domain (today: lake/); `rtfd up` serves it with dagster-webserver
(port topology.DAGSTER_PORT) and dagster-daemon (schedules, sensors), DAGSTER_HOME under the state folder.
"""
