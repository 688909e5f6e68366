"""The one resource every lakehouse asset uses: where the archive, the lake and the DuckDB file are.

Empty fields mean "from the environment" (RTFD_STATE_DIR, RTFD_PORT_OFFSET, RTFD_PG_DSN, RTFD_LAKE_*), which is
how `rtfd up` configures the webserver and daemon; tests pass a state folder, port offset and lake folder.
The database password never appears in the resource's config (the UI shows that): it comes from Settings, and
it is the read-only rtfd_lake role's (the lakehouse only reads the archive).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rtfd.config import Settings
from warehouse.config import LakeSettings, database_path, lake_dir


class LakeResource(dg.ConfigurableResource):
    state_dir: str | None = None
    port_offset: int | None = None
    lake_dir: str | None = None
    database: str | None = None

    def settings(self) -> Settings:
        overrides = {}
        if self.state_dir is not None:
            overrides["state_dir"] = Path(self.state_dir)
        if self.port_offset is not None:
            overrides["port_offset"] = self.port_offset
        return Settings(**overrides)

    def lake_settings(self) -> LakeSettings:
        overrides = {}
        if self.lake_dir is not None:
            overrides["dir"] = Path(self.lake_dir)
        if self.database is not None:
            overrides["database"] = Path(self.database)
        return LakeSettings(**overrides)

    @property
    def dsn(self) -> str:
        """The archive as Dagster reads it: the read-only rtfd_lake role (schemas/postgres/0005)."""
        return self.settings().component_dsn("lake")

    @property
    def lake(self) -> Path:
        return lake_dir(self.settings(), self.lake_settings())

    @property
    def database_file(self) -> Path:
        return database_path(self.settings(), self.lake_settings())
