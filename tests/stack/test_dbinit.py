"""compose's db-init (`python -m rtfd.stack.dbinit`) against the stack's real PostgreSQL: migrations are idempotent
and the dashboard role logs in with the password of RTFD_DASHBOARD_PG_DSN, reading what the dashboard reads."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import psycopg
import pytest

from dashboards.role import dashboard_dsn
from rtfd.stack.dbinit import dashboard_password


def test_dashboard_password_only_from_a_dsn_of_the_dashboard_role():
    assert dashboard_password("postgresql://rtfd_dashboard:p%40ss@postgres:5432/rtfd") == "p@ss"
    assert dashboard_password("postgresql://rtfd:secret@postgres:5432/rtfd") is None
    assert dashboard_password("postgresql://rtfd_dashboard@postgres:5432/rtfd") is None


@pytest.mark.stack
def test_dbinit_migrates_and_lets_the_dashboard_role_log_in(stack):
    password = secrets.token_urlsafe(16)
    role_dsn = dashboard_dsn(stack.postgres_dsn, password)
    env = {**os.environ, "RTFD_PG_DSN": stack.postgres_dsn, "RTFD_DASHBOARD_PG_DSN": role_dsn,
           "RTFD_STATE_DIR": str(stack.state_dir)}  # fmt: skip
    def dbinit() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rtfd.stack.dbinit"], env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    first = dbinit()
    assert first.returncode == 0, first.stderr
    result = dbinit()  # a second `docker compose up`: nothing to apply, the login enabled again
    assert result.returncode == 0, result.stderr
    assert "migrations applied: none pending" in result.stderr
    assert "rtfd_dashboard may log in" in result.stderr
    assert password not in result.stderr + result.stdout
    with psycopg.connect(role_dsn, connect_timeout=5) as conn:
        for table in ("transactions", "alerts", "fraud_labels"):
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
