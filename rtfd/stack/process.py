"""Supervised OS processes: start detached with a log file and a pid file, check, stop, tail the log.

Every component of the native stack (controller, brokers, PostgreSQL, registry, producers) is one of these,
so `rtfd up` is idempotent (a live pid file means "already running") and `rtfd down` finds everything.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A component could not start or stop; the message names the problem and the fix."""


@dataclass
class ManagedProcess:
    name: str
    cmd: list[str]
    run_dir: Path  # pid files
    log_dir: Path
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None  # run as this OS user (PostgreSQL refuses root)
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    # --- state --------------------------------------------------------------------------------------------
    def process(self) -> psutil.Process | None:
        """The live process recorded in the pid file, or None (a stale or reused pid counts as None)."""
        try:
            info = json.loads(self.pid_file.read_text())
            proc = psutil.Process(info["pid"])
            if abs(proc.create_time() - info["create_time"]) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (FileNotFoundError, json.JSONDecodeError, KeyError, psutil.Error):
            return None

    @property
    def pid(self) -> int | None:
        proc = self.process()
        return proc.pid if proc else None

    def is_running(self) -> bool:
        return self.process() is not None

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> int:
        """Start detached (own session, so a Ctrl-C of `rtfd up` does not kill it); return the pid."""
        if self.port is not None:
            ensure_port_free(self.port, self.name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                start_new_session=True,
                user=self.user,
            )
        created = psutil.Process(proc.pid).create_time()
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "create_time": created, "cmd": self.cmd}))
        return proc.pid

    def stop(self, timeout: float | None = None) -> bool:
        """Graceful stop (its stop signal, then SIGKILL after the timeout). True if something was stopped."""
        proc = self.process()
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self.signal(self.stop_signal)
        self.wait_stopped(timeout if timeout is not None else self.stop_timeout)
        return True

    def signal(self, sig: int) -> None:
        proc = self.process()
        if proc is not None:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass

    def wait_stopped(self, timeout: float) -> None:
        proc = self.process()
        if proc is not None:
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
                proc.wait(10)
            except psutil.NoSuchProcess:
                pass
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would (used by tests and chaos scenarios)."""
        proc = self.process()
        if proc is not None:
            proc.kill()
            proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll `check` until true; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise StackError(
                    f"{self.name} died while starting. Last lines of {self.log_file}:\n{self.tail()}"
                )
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - any failure of the probe means "not yet"
                pass
            time.sleep(0.3)
        raise StackError(
            f"{self.name} was not {what} after {timeout:.0f}s. Last lines of {self.log_file}:\n{self.tail()}"
        )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def ensure_port_free(port: int, name: str) -> None:
    """Fail with the owner of the port (when we can see it) and how to move rtfd out of its way."""
    if not port_open(port):
        return
    owner = ""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                p = psutil.Process(conn.pid)
                owner = f" by pid {conn.pid} ({' '.join(p.cmdline()[:3])})"
                break
    except (psutil.Error, PermissionError):
        pass
    raise StackError(
        f"port {port} for {name} is already taken{owner}. Stop that process, or run rtfd on other ports "
        f"with RTFD_PORT_OFFSET=<n> (every native port moves by n)."
    )


def stop_strays(env: str, value: str, timeout: float = 5.0) -> int:
    """Stop the processes a component spawned outside its own process group, found by an environment variable
    they inherited (Dagster's run workers carry the stack's DAGSTER_HOME): SIGTERM, then SIGKILL after `timeout`.
    Never this process or its ancestors (a shell may export the same variable). Returns how many it stopped."""
    import psutil

    spared = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in spared:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(env) == value:
                found.append(proc)
        except psutil.Error:
            continue
    for proc in found:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(found, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(found)
