"""One-shot database setup for containers (compose's `db-init`): what `rtfd up` does for its private cluster.

`python -m rtfd.stack.dbinit` applies the migrations of schemas/postgres not applied yet (also to a database whose
volume predates them: PostgreSQL's initdb scripts run only on an empty volume) and, when RTFD_DASHBOARD_PG_DSN names
the rtfd_dashboard role with a password, lets that role log in with it. Settings come from RTFD_* variables.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

from dashboards.config import DashboardSettings
from dashboards.role import ROLE, enable_login
from rtfd.config import Settings
from rtfd.stack.postgres import migrate

log = logging.getLogger("rtfd.dbinit")


def dashboard_password(dsn: str) -> str | None:
    """The password in a DSN of the dashboard role, None when the DSN is another role's or has none."""
    parts = urlsplit(dsn)
    if unquote(parts.username or "") != ROLE or not parts.password:
        return None
    return unquote(parts.password)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, dash = Settings(), DashboardSettings()
    applied = migrate(settings.postgres_dsn)
    log.info("migrations applied: %s", ", ".join(applied) or "none pending")
    password = dashboard_password(dash.dsn(settings))
    if password is None:
        log.info("RTFD_DASHBOARD_PG_DSN does not name %s with a password: its login left as it is", ROLE)
        return
    enable_login(settings.postgres_dsn, password)
    log.info("%s may log in", ROLE)


if __name__ == "__main__":
    main()
