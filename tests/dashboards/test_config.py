"""Dashboard settings without a stack: password checks (plain and hashed), the role's DSN, refusing to serve
without a login secret, and an app module that does nothing at import."""

from __future__ import annotations

import hashlib
import importlib

import pytest
from pydantic import SecretStr

from dashboards.config import DashboardSettings, hash_password, verify_password
from dashboards.role import dashboard_dsn
from rtfd.config import Settings


def test_pbkdf2_and_sha256_hashes_verify_only_the_right_password():
    stored = hash_password("s3cret", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert verify_password("s3cret", stored) and not verify_password("s3cret ", stored)
    bare = hashlib.sha256(b"s3cret").hexdigest()
    assert verify_password("s3cret", bare.upper()) and not verify_password("other", bare)
    with pytest.raises(ValueError):
        verify_password("s3cret", "md5$abc")


def test_hash_wins_over_plain_and_no_secret_means_no_login(monkeypatch):
    for var in ("RTFD_DASHBOARD_PASSWORD", "RTFD_DASHBOARD_PASSWORD_HASH", "RTFD_DASHBOARD_DEV"):
        monkeypatch.delenv(var, raising=False)
    both = DashboardSettings(password=SecretStr("plain"), password_hash=SecretStr(hash_password("hashed", 1000)))
    assert both.check_password("hashed") and not both.check_password("plain")
    assert DashboardSettings(password=SecretStr("plain")).check_password("plain")
    nothing = DashboardSettings(_env_file=None)
    assert not nothing.check_password("")
    with pytest.raises(SystemExit, match="RTFD_DASHBOARD_PASSWORD"):
        nothing.validate_for_serving()
    DashboardSettings(_env_file=None, dev=True).validate_for_serving()  # dev mode needs no secret


def test_port_dsn_and_generated_cookie_secret(tmp_path):
    settings = Settings(_env_file=None, state_dir=tmp_path, port_offset=100, pg_password=SecretStr("pw"))
    dash = DashboardSettings(_env_file=None)
    assert dash.listen_port(settings) == 5106
    assert dash.dsn(settings) == settings.postgres_dsn
    secret = dash.cookie_secret_value(settings)
    assert len(secret) == 64 and secret == dash.cookie_secret_value(settings)  # kept across restarts
    assert (tmp_path / "secrets" / "dashboard_cookie_secret").stat().st_mode & 0o077 == 0
    assert dashboard_dsn("postgresql://rtfd:x@127.0.0.1:5533/rtfd?sslmode=disable", "p@ss/word") == (
        "postgresql://rtfd_dashboard:p%40ss%2Fword@127.0.0.1:5533/rtfd?sslmode=disable"
    )


def test_importing_the_app_has_no_side_effects():
    app = importlib.import_module("dashboards.app")
    assert hasattr(app, "FraudDashboard")  # nothing served, no connection opened: pn.state.served is False
