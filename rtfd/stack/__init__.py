"""The native stack: every component as a real, supervised process on this machine.

Order of `up`: PostgreSQL (+ migrations) -> Kafka controller -> brokers -> topics -> schema registry
(+ contracts) -> Flink JobManager -> TaskManager -> bank producers -> supervisor -> the Flink job (submitted
unless it runs, restored from its newest savepoint or retained checkpoint). `down` stops the processes in
reverse and leaves the job's checkpoints in place. Both are idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

import rtfd
from rtfd import topology
from rtfd.config import Settings
from rtfd.stack import kafka, postgres
from rtfd.stack.flink import JOB_FILE, JOB_NAME, FlinkCluster
from rtfd.stack.process import ManagedProcess, StackError, port_open, stop_strays

__all__ = ["NativeStack", "StackError"]

PROJECT_ROOT = Path(rtfd.__file__).resolve().parents[1]
DEFAULT_BANK_TPS = 20


def jvm_dir() -> Path:
    return Path(os.environ.get("RTFD_JVM_DIR", PROJECT_ROOT / ".jvm"))


class NativeStack:
    def __init__(self, settings: Settings, progress: Callable[[str], None] | None = None):
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.say = progress or (lambda _msg: None)
        # children see the same settings (state folder, ports) as this process
        self.child_env = {"RTFD_STATE_DIR": str(self.state), "RTFD_PORT_OFFSET": str(settings.port_offset)}
        self.kafka = kafka.KafkaCluster(settings, jvm_dir(), self.child_env)
        self.pg = postgres.PrivatePostgres(settings)
        self.flink = FlinkCluster(settings, self.child_env)

    # --- the component list ---------------------------------------------------------------------------------
    def _python_process(self, name: str, args: list[str], port: int | None = None) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            cmd=[sys.executable, *args],
            run_dir=self.state / "run",
            log_dir=self.state / "logs",
            port=port,
            env={**self.child_env, "PYTHONUNBUFFERED": "1"},
            cwd=PROJECT_ROOT,
        )

    def registry(self) -> ManagedProcess:
        proc = self._python_process(
            "registry", ["-m", "services.registry"], port=self.settings.port(topology.REGISTRY_PORT)
        )
        proc.env.update(self.database_env("registry"))
        return proc

    def producer(self, bank: str, tps: int = DEFAULT_BANK_TPS) -> ManagedProcess:
        version = "1" if bank == "bank-a" else "2"  # Bank A still writes v1: mixed writers, as in real life
        return self._python_process(
            f"producer-{bank}",
            ["-m", "rtfd.cli", "produce", "--bank", bank, "--tps", str(tps), "--schema-version", version],
        )

    def alert_consumer(self) -> ManagedProcess:
        proc = self._python_process("alert-consumer", ["-m", "services.alerts"])
        proc.env.update(self.database_env("alerts"))
        return proc

    def database_env(self, component: str) -> dict[str, str]:
        """A component connects as its own least-privilege role (schemas/postgres/0005_component_roles.sql)
        when the stack runs PostgreSQL; with an external RTFD_PG_DSN it inherits that one."""
        if not self.settings.managed_postgres:
            return {}
        return {"RTFD_PG_DSN": self.settings.component_dsn(component)}

    def labels_consumer(self) -> ManagedProcess:
        proc = self._python_process("labels-consumer", ["-m", "services.labels"])
        proc.env.update(self.database_env("alerts"))  # rtfd_alerts may write fraud_labels (0005)
        return proc

    def dashboard(self) -> ManagedProcess:
        proc = self._python_process(
            "dashboard", ["-m", "dashboards"], port=self.settings.port(topology.DASHBOARD_PORT)
        )
        proc.env.update(self.dashboard_env())
        return proc

    def dashboard_env(self) -> dict[str, str]:
        """The dashboard connects as the read-mostly role rtfd_dashboard; outside dev mode (no
        RTFD_DASHBOARD_PASSWORD[_HASH] / RTFD_DASHBOARD_DEV given) its login password is generated once into
        <state>/secrets/dashboard_password."""
        from dashboards.role import dashboard_dsn

        env = {}
        if self.settings.managed_postgres:
            env["RTFD_DASHBOARD_PG_DSN"] = dashboard_dsn(
                self.settings.postgres_dsn, self.settings.state_secret("dashboard_db_password")
            )
        from warehouse.config import database_path

        env["RTFD_DASHBOARD_LAKE"] = str(database_path(self.settings))  # history from the lake once it is built
        given = ("RTFD_DASHBOARD_PASSWORD", "RTFD_DASHBOARD_PASSWORD_HASH", "RTFD_DASHBOARD_DEV")
        if not any(os.environ.get(k) for k in given):
            env["RTFD_DASHBOARD_PASSWORD"] = self.settings.state_secret("dashboard_password")
        return env

    def dagster_env(self) -> dict[str, str]:
        """Dagster's instance (runs, schedules, sensor cursors) lives in <state>/dagster; `up` writes its
        dagster.yaml (orchestration/instance.py)."""
        from warehouse.config import dagster_home

        return {"DAGSTER_HOME": str(dagster_home(self.settings))}

    def dagster_webserver(self) -> ManagedProcess:
        port = self.settings.port(topology.DAGSTER_PORT)
        args = ["-m", "dagster_webserver", "-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)]
        proc = self._python_process("dagster-webserver", args, port=port)
        proc.env.update(self.dagster_env())
        return proc

    def dagster_daemon(self) -> ManagedProcess:
        daemon = Path(sys.executable).parent / "dagster-daemon"  # the console script of the dagster package
        proc = self._python_process("dagster-daemon", [str(daemon), "run", "-m", "orchestration.definitions"])
        proc.env.update(self.dagster_env())
        return proc

    def supervisor(self) -> ManagedProcess:
        return self._python_process("supervisor", ["-m", "rtfd.stack.supervisor"])

    def components(self) -> list[ManagedProcess]:
        """Every component this state folder may run, in start order."""
        info = self.settings.stack_info()
        procs = [self.pg.process()] if self.settings.managed_postgres else []
        procs += self.kafka.processes(info.get("brokers", 3))
        procs.append(self.registry())
        if info.get("flink", False):
            procs += self.flink.processes()
        procs += [self.alert_consumer(), self.labels_consumer(), self.dashboard()]
        procs += [self.dagster_webserver(), self.dagster_daemon()]
        procs += [self.producer(bank, info.get("tps", DEFAULT_BANK_TPS)) for bank in info.get("banks", [])]
        return procs

    def component(self, name: str) -> ManagedProcess:
        for proc in self.all_known():
            if proc.name == name:
                return proc
        names = ", ".join(p.name for p in self.all_known())
        raise StackError(f"no component named {name!r}; known: {names}")

    def all_known(self) -> list[ManagedProcess]:
        """Components plus any process with a pid file (e.g. a producer from an earlier `up`)."""
        procs = {p.name: p for p in [*self.components(), self.supervisor()]}
        for pid_file in sorted((self.state / "run").glob("*.pid")):
            name = pid_file.stem
            if name not in procs and name.startswith("producer-"):
                procs[name] = self.producer(name.removeprefix("producer-"))
            elif name not in procs and name.startswith("flink-"):  # from an `up` before `--no-flink`
                procs.update({p.name: p for p in self.flink.processes() if p.name == name})
        return list(procs.values())

    # --- up -------------------------------------------------------------------------------------------------
    def up(
        self,
        brokers: int = 3,
        banks: tuple[str, ...] = topology.DEFAULT_BANKS,
        tps: int = DEFAULT_BANK_TPS,
        flink: bool = True,
        job: bool = True,
    ):
        """Start what is not running. `flink=False` leaves out the Flink cluster, `job=False` only the job."""
        self.state.mkdir(parents=True, exist_ok=True)
        info = self.settings.stack_info()
        if info and info.get("brokers") != brokers and any(p.is_running() for p in self.components()):
            raise StackError(
                f"a stack with {info.get('brokers')} broker(s) is running from {self.state}; "
                "`rtfd down` first (add --purge to change the topology)."
            )
        self.settings.stack_file.write_text(
            json.dumps({"brokers": brokers, "banks": list(banks), "tps": tps, "flink": flink, "job": flink and job})
        )

        if not all(p.is_running() for p in self.components()):
            self.supervisor().stop()  # it would race `up` to restart the missing parts; back at the end
        if self.settings.managed_postgres:
            if self.pg.initialise():
                self.say("postgres: initialised a new cluster")
            self._start(self.pg.process(), lambda: postgres.can_connect(self._pg_admin_dsn()), 60)
            self.pg.create_database()
        else:
            self.say("postgres: using RTFD_PG_DSN")
        applied = postgres.migrate(self.settings.postgres_dsn)
        self.say(f"postgres: migrations applied: {', '.join(applied) or 'none pending'}")
        if self.settings.managed_postgres:
            from rtfd.security.roles import COMPONENT_ROLES, enable_logins

            enable_logins(self.settings.postgres_dsn,
                          {c: self.settings.state_secret(f"{c}_db_password") for c in COMPONENT_ROLES})

        self.kafka.configure(brokers)
        controller, *rest = self.kafka.processes(brokers)
        self._start(controller, lambda: port_open(controller.port), 90)
        self._start_all(rest, lambda p: port_open(p.port), 90)  # brokers boot in parallel
        self._wait(lambda: kafka.live_broker_count(self.settings) >= brokers, 120, f"{brokers} broker(s) registered")
        created = kafka.ensure_topics(self.settings, brokers)
        self.say(f"kafka: topics created: {', '.join(created) or 'all present'}")

        # generated before the registry starts, so it and its clients never race to create the password
        registry_auth = self.settings.registry_credentials()
        registry = self.registry()
        self._start(registry, lambda: httpx.get(f"{self.settings.registry}/subjects", auth=registry_auth,
                                                timeout=2).is_success, 60)
        from schemas.registration import register_all

        ids = register_all(self.settings.registry_conf())
        self.say("registry: contracts registered: " + ", ".join(f"{s} {v}" for s, v in ids.items()))

        if flink:
            self.flink.configure()
            jobmanager, taskmanager = self.flink.processes()
            self._start(jobmanager, lambda: self.flink.overview() is not None, 120)
            self._start(taskmanager, lambda: self.flink.taskmanagers() >= 1, 120)

        self._start(self.alert_consumer(), lambda: True, 0)
        self._start(self.labels_consumer(), lambda: True, 0)
        if self.settings.managed_postgres:
            from dashboards.role import enable_login

            enable_login(self.settings.postgres_dsn, self.settings.state_secret("dashboard_db_password"))
        dashboard = self.dashboard()
        self._start(dashboard, lambda: httpx.get(f"http://127.0.0.1:{dashboard.port}/liveness", timeout=2)
                    .is_success, 60)
        if "RTFD_DASHBOARD_PASSWORD" in dashboard.env:
            self.say(f"dashboard: http://127.0.0.1:{dashboard.port} (password in "
                     f"{self.settings.state_dir / 'secrets' / 'dashboard_password'})")

        from orchestration.instance import ensure_home

        ensure_home(self.settings)  # the lakehouse: Dagster UI + schedules and sensors on <state>/dagster
        webserver = self.dagster_webserver()
        self._start(webserver, lambda: httpx.get(f"http://127.0.0.1:{webserver.port}/server_info", timeout=2)
                    .is_success, 240)
        self._start(self.dagster_daemon(), lambda: True, 0)

        for bank in banks:
            self._start(self.producer(bank, tps), lambda: True, 0)
        self._start(self.supervisor(), lambda: True, 0)
        if flink and job:
            self.submit_job()
        self.say("up: every component is running; see `rtfd status`")

    def submit_job(self) -> str | None:
        """Submit the fraud job unless it is live; resume from its newest savepoint or retained checkpoint."""
        if not JOB_FILE.exists():
            self.say(f"flink job: {JOB_FILE.relative_to(PROJECT_ROOT)} does not exist yet; not submitted")
            return None
        started = time.monotonic()
        job_id, submitted, restored = self.flink.ensure_job(JOB_FILE, JOB_NAME)
        if not submitted:
            self.say(f"flink job: {JOB_NAME} is live ({job_id}); not resubmitted")
            return job_id
        self.flink.wait_running(job_id)
        origin = f"restored from {restored}" if restored else "fresh state"
        self.say(f"flink job: {JOB_NAME} running ({job_id}, {origin}) in {time.monotonic() - started:.1f}s")
        return job_id

    def _start_all(self, procs: list[ManagedProcess], ready: Callable[[ManagedProcess], bool], timeout: float):
        started = time.monotonic()
        fresh = []
        for proc in procs:
            if proc.is_running():
                self.say(f"{proc.name}: already running (pid {proc.pid})")
            else:
                proc.start()
                fresh.append(proc)
        for proc in fresh:
            proc.wait_ready(lambda p=proc: ready(p), max(1.0, timeout - (time.monotonic() - started)))
            self.say(f"{proc.name}: started (pid {proc.pid}, port {proc.port}) in {time.monotonic() - started:.1f}s")

    def _pg_admin_dsn(self) -> str:
        return self.settings.postgres_dsn.rsplit("/", 1)[0] + "/postgres"

    def _start(self, proc: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
        if proc.is_running():
            self.say(f"{proc.name}: already running (pid {proc.pid})")
            return
        started = time.monotonic()
        pid = proc.start()
        if timeout:
            proc.wait_ready(ready, timeout)
        else:  # no readiness probe: make sure it survives its first second
            time.sleep(1.0)
            proc.wait_ready(lambda: True, 1)
        port = f", port {proc.port}" if proc.port else ""
        self.say(f"{proc.name}: started (pid {pid}{port}) in {time.monotonic() - started:.1f}s")

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - not yet
                pass
            time.sleep(0.5)
        raise StackError(f"timed out after {timeout:.0f}s waiting for {what}; see `rtfd logs NAME`")

    # --- down -----------------------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        """Stop in reverse start order; brokers before the controller so they shut down cleanly."""
        stopped = []
        procs = self.all_known()
        brokers = [p for p in procs if p.name.startswith("kafka-") and p.name != "kafka-controller"]
        others = [p for p in procs if p not in brokers]
        # producers first, then Flink (TaskManager, then JobManager: the job is suspended, its retained
        # checkpoints stay for the next `up`), the registry, brokers together, controller/combined node, postgres
        tiers = [
            [p for p in others if p.name == "supervisor"],  # first, so nothing gets restarted
            [p for p in others
             if p.name.startswith("producer-") or p.name in ("alert-consumer", "labels-consumer", "dashboard",
                                                          "dagster-webserver", "dagster-daemon")],
            [p for p in others if p.name == "flink-taskmanager"],
            [p for p in others if p.name == "flink-jobmanager"],
            [p for p in others if p.name == "registry"],
            brokers,
            [p for p in others if p.name in ("kafka-controller", "kafka")],
            [p for p in others if p.name == "postgres"],
        ]
        for tier in tiers:
            live = [p for p in tier if p.is_running()]
            for p in live:
                p.signal(p.stop_signal)
            for p in live:
                p.wait_stopped(p.stop_timeout)
                stopped.append(p.name)
                self.say(f"{p.name}: stopped")
        # runs the Dagster daemon launched are not in its process group: they would outlive it
        strays = stop_strays("DAGSTER_HOME", self.dagster_env()["DAGSTER_HOME"])
        if strays:
            self.say(f"dagster: stopped {strays} run process(es) the daemon had launched")
        if purge and self.state.exists():
            if not (self.state / "stack.json").exists() and self.state.name != ".rtfd":
                raise StackError(f"refusing to purge {self.state}: it does not look like an rtfd state folder")
            shutil.rmtree(self.state)
            self.say(f"purged {self.state}")
        return stopped

    # --- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict:
        from rtfd.stack.status import collect

        return collect(self)
