"""The Dagster instance of a state folder: DAGSTER_HOME=<state>/dagster with SQLite storage, one run at a
time (the machine this targets has 2 cores), no telemetry. Written once; `rtfd up` and `rtfd lake build`
share it, so every run shows in the UI."""

from __future__ import annotations

import os
from pathlib import Path

from rtfd.config import Settings
from warehouse.config import dagster_home

DAGSTER_YAML = """\
# written by rtfd (orchestration/instance.py); runs, events and schedules live under this folder
storage:
  sqlite:
    base_dir: {home}/storage
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {home}/artifacts
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_home(settings: Settings) -> Path:
    """Create <state>/dagster with its dagster.yaml (kept if present) and return the folder."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML.format(home=home))
    return home


def instance(settings: Settings):
    """The state folder's DagsterInstance (DAGSTER_HOME is set for this process too)."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(ensure_home(settings))
    return dg.DagsterInstance.get()


if __name__ == "__main__":  # containers: `python -m orchestration.instance` prepares DAGSTER_HOME, prints it
    print(ensure_home(Settings()))
