"""The Dagster Definitions of rtfd: every domain folder merged (today only lake/), one resource set.

Served by `rtfd up` (dagster-webserver + dagster-daemon, `-m orchestration.definitions`) and loaded by
`rtfd lake build` and the tests.
"""

from __future__ import annotations

import dagster as dg

from orchestration.lake import assets, automation, checks
from orchestration.resources import LakeResource

defs = dg.Definitions(
    assets=[assets.archive_extract, assets.lake_partition, assets.duckdb_marts],
    asset_checks=checks.CHECKS,
    jobs=automation.JOBS,
    schedules=automation.SCHEDULES,
    sensors=automation.SENSORS,
    resources={"lake_store": LakeResource()},
)
