"""PostgreSQL for the archive: RTFD_PG_DSN when set, otherwise a private cluster in the state folder.

The private cluster is initialised with the system's initdb and run as one supervised `postgres` process.
PostgreSQL refuses to run as root, so as root it runs as an unprivileged OS user (RTFD_PG_OS_USER).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

import schemas
from rtfd import topology
from rtfd.config import Settings
from rtfd.stack.process import ManagedProcess, StackError

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were not found. Install them "
    "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), point RTFD_PG_BIN at "
    "their bin folder, or use an existing database with RTFD_PG_DSN=postgresql://user:pass@host/db."
)


def find_bin_dir() -> Path:
    candidates: list[str] = []
    if os.environ.get("RTFD_PG_BIN"):
        candidates.append(os.environ["RTFD_PG_BIN"])
    # Debian keeps server binaries out of PATH; take the newest major version.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        candidates.append(out)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).resolve().parent))
    candidates += sorted(glob.glob("/opt/homebrew/opt/postgresql*/bin") + glob.glob("/usr/local/opt/postgresql*/bin"))
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    raise StackError(INSTALL_HINT)


class PrivatePostgres:
    """A PostgreSQL cluster under <state>/postgres, serving database `rtfd` to role `rtfd` on loopback."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.state_dir.resolve() / "postgres"
        self.data = self.root / "data"
        self.port = settings.port(topology.POSTGRES_PORT)
        self.user = settings.pg_os_user if os.geteuid() == 0 else None

    def process(self) -> ManagedProcess:
        bin_dir = find_bin_dir()
        return ManagedProcess(
            name="postgres",
            cmd=[
                str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root / 'socket'}",
                "-c", "max_connections=200", "-c", "shared_buffers=256MB", "-c", "synchronous_commit=on",
            ],  # fmt: skip
            run_dir=self.settings.state_dir.resolve() / "run",
            log_dir=self.settings.state_dir.resolve() / "logs",
            port=self.port,
            user=self.user,
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, checkpoint, exit
            stop_timeout=60.0,
        )

    def initialise(self) -> bool:
        """initdb on first start (returns True then); later starts reuse the data folder."""
        if (self.data / "PG_VERSION").exists():
            return False
        bin_dir = find_bin_dir()
        (self.root / "socket").mkdir(parents=True, exist_ok=True)
        if self.user:
            self._hand_over_to_user()
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as pwfile:
            pwfile.write(self.settings.pg_password.get_secret_value())
        try:
            if self.user:
                os.chown(pwfile.name, pwd.getpwnam(self.user).pw_uid, -1)
            result = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data), "-U", "rtfd", "--pwfile", pwfile.name,
                 "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C"],
                capture_output=True, text=True, user=self.user,
            )  # fmt: skip
        finally:
            os.unlink(pwfile.name)
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
        return True

    def _hand_over_to_user(self) -> None:
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError as exc:
            raise StackError(
                f"running as root, PostgreSQL needs an unprivileged OS user but `{self.user}` does not exist. "
                "Create it (useradd --system postgres) or set RTFD_PG_OS_USER to an existing user."
            ) from exc
        for path in (self.root, self.root / "socket"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        probe = subprocess.run(["test", "-w", str(self.root)], user=self.user)
        if probe.returncode != 0:
            raise StackError(
                f"OS user {self.user} cannot reach {self.root}: a parent folder is not searchable by others. "
                "Choose a state folder outside private folders (RTFD_STATE_DIR) or `chmod o+x` its parents."
            )

    def create_database(self) -> None:
        admin_dsn = self.settings.postgres_dsn.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'rtfd'").fetchone() is None:
                conn.execute("CREATE DATABASE rtfd")


def can_connect(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=2) as conn:
        conn.execute("SELECT 1")
    return True


def migrate(dsn: str) -> list[str]:
    """Apply schemas/postgres/NNNN_*.sql not yet applied, each in its own transaction; return applied."""
    applied = []
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        # one migrator at a time, even if two `rtfd up` race
        conn.execute("SELECT pg_advisory_lock(7231001)")
        try:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            conn.commit()
            for path in schemas.migrations():
                if path.stem in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
                applied.append(path.stem)
        finally:
            conn.execute("SELECT pg_advisory_unlock(7231001)")
            conn.commit()
    return applied


def row_counts(dsn: str, tables: tuple[str, ...] = ("transactions",)) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        for table in tables:
            try:
                counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            except psycopg.errors.UndefinedTable:
                conn.rollback()
                counts[table] = None
    return counts
