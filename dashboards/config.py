"""Settings of the dashboard, read from RTFD_DASHBOARD_* environment variables (and an optional .env file).

The platform-wide settings (state folder, port offset, PostgreSQL) stay in rtfd.config.Settings; this class adds
what only the dashboard needs: where it listens, who may log in, and which database role it uses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rtfd.config import Settings
from rtfd.topology import DASHBOARD_PORT

PBKDF2_ITERATIONS = 600_000


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTFD_DASHBOARD_", env_file=".env", extra="ignore")

    dev: bool = False
    """Dev mode: no login. Never outside a developer's machine."""
    address: str = "127.0.0.1"
    port: int | None = None
    """Default: 5006 + RTFD_PORT_OFFSET."""
    password: SecretStr | None = None
    """The analysts' shared password (plain)."""
    password_hash: SecretStr | None = None
    """Or its hash: `pbkdf2_sha256$<iterations>$<salt>$<hex>` (`python -m dashboards hash-password`) or a bare
    SHA-256 hex digest."""
    cookie_secret: SecretStr | None = None
    """Signs the login cookie; generated into the state folder when unset."""
    pg_dsn: SecretStr | None = None
    """The dashboard's own role (rtfd_dashboard); unset: the platform's RTFD_PG_DSN / private cluster (dev)."""
    poll_ms: int = 1000
    """How often the live feed and the KPIs refresh."""
    feed_window: int = 500
    """Alerts kept in the live table (older rows roll over)."""

    def listen_port(self, settings: Settings) -> int:
        return self.port if self.port is not None else settings.port(DASHBOARD_PORT)

    def dsn(self, settings: Settings) -> str:
        return self.pg_dsn.get_secret_value() if self.pg_dsn is not None else settings.postgres_dsn

    def cookie_secret_value(self, settings: Settings) -> str:
        """RTFD_DASHBOARD_COOKIE_SECRET, else one generated once into <state>/secrets (kept across restarts,
        so a restart does not log every analyst out)."""
        if self.cookie_secret is not None:
            return self.cookie_secret.get_secret_value()
        path = Path(settings.state_dir) / "secrets" / "dashboard_cookie_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def login_required(self) -> bool:
        return not self.dev

    def check_password(self, password: str) -> bool:
        """Constant-time check against the hash when one is set, else against the plain password."""
        if self.password_hash is not None:
            return verify_password(password, self.password_hash.get_secret_value())
        if self.password is not None:
            return hmac.compare_digest(password.encode(), self.password.get_secret_value().encode())
        return False

    def validate_for_serving(self) -> None:
        if self.login_required and self.password is None and self.password_hash is None:
            raise SystemExit(
                "the dashboard needs a login password outside dev mode: set RTFD_DASHBOARD_PASSWORD or "
                "RTFD_DASHBOARD_PASSWORD_HASH (python -m dashboards hash-password), or RTFD_DASHBOARD_DEV=1 / --dev "
                "on a developer machine"
            )
        if self.password_hash is not None:
            parse_hash(self.password_hash.get_secret_value())  # fail at start, not at the first login


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def parse_hash(stored: str) -> tuple[str, int, str, str]:
    """(scheme, iterations, salt, hex digest) of a stored hash; ValueError when it is neither format."""
    stored = stored.strip()
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, digest = stored.split("$")
            return "pbkdf2_sha256", int(iterations), salt, digest.lower()
        except ValueError:
            pass
    elif len(stored) == 64 and all(c in "0123456789abcdefABCDEF" for c in stored):
        return "sha256", 0, "", stored.lower()
    raise ValueError(
        "RTFD_DASHBOARD_PASSWORD_HASH must be pbkdf2_sha256$<iterations>$<salt>$<hex> or a SHA-256 hex digest"
    )


def verify_password(password: str, stored: str) -> bool:
    scheme, iterations, salt, digest = parse_hash(stored)
    if scheme == "sha256":
        candidate = hashlib.sha256(password.encode()).hexdigest()
    else:
        candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return hmac.compare_digest(candidate, digest)
