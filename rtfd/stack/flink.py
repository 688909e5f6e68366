"""A standalone Apache Flink cluster from the distribution inside the apache-flink wheel, and its jobs.

One JobManager (`flink-jobmanager`, REST API and web UI on 8081) and one TaskManager (`flink-taskmanager`,
4 slots) run in the foreground as supervised processes; their configuration is written to
<state>/flink/conf/config.yaml, so nothing is written into site-packages. Jobs are submitted with the
wheel's `flink run -py` and managed over the REST API: savepoints, stop-with-savepoint, cancel, status.

State backend: `rocksdb` (in flink-dist), with incremental checkpoints to file://<state>/flink/checkpoints.
The fraud job keeps every card's recent history for 90 days (hundreds of thousands of cards per hour at
bench rates): on the heap, that outgrows the TaskManager and every checkpoint would copy all of it; RocksDB
keeps it on local disk, caches the hot part in managed memory and each checkpoint uploads only new files.

The changelog state backend wraps it: every state change is also appended to a log under
file://<state>/flink/changelog, and a checkpoint persists that log instead of flushing RocksDB's memtables on
the task's thread. That flush was the checkpoint's synchronous phase, 70-200 ms during which no transaction
moved (docs/benchmarks.md, session 13). RocksDB's own checkpoint ("materialization") runs every 5 minutes
in the background, and then the log before it is deleted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

import rtfd
from rtfd import topology
from rtfd.config import Settings
from rtfd.stack.process import ManagedProcess, StackError, ensure_port_free

PROJECT_ROOT = Path(rtfd.__file__).resolve().parents[1]
JOB_NAME = "rtfd-fraud-detection"  # the job sets pipeline.name to this; we find it by name
JOB_FILE = PROJECT_ROOT / "flink" / "job.py"

# A job in one of these states is gone for good; any other state means it still holds the cluster.
TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED", "SUSPENDED"}


def flink_home() -> Path:
    """The Flink distribution shipped inside the apache-flink wheel (bin/, lib/, conf/)."""
    import pyflink

    home = Path(pyflink.__file__).resolve().parent
    if not (home / "bin" / "jobmanager.sh").exists():
        raise StackError(
            f"the apache-flink wheel at {home} has no bin/jobmanager.sh; reinstall it (`make install`)."
        )
    return home


def _default_java_opts(home: Path) -> str:
    """env.java.opts.all of the wheel's own config.yaml: the --add-opens list Flink needs on Java 17+."""
    text = (home / "conf" / "config.yaml").read_text()
    match = re.search(r"^\s+all:\s*(--add-\S.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


@dataclass(frozen=True)
class FlinkPaths:
    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def changelog(self) -> Path:
        return self.root / "changelog"

    @property
    def savepoints(self) -> Path:
        return self.root / "savepoints"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def run(self) -> Path:
        return self.root / "run"


def flink_config(settings: Settings, paths: FlinkPaths, java_opts: str = "") -> dict[str, object]:
    """The cluster's config.yaml as flat Flink 2.x keys: loopback only, sized for a 2-core, 24 GB machine."""
    conf: dict[str, object] = {
        # network: loopback only; the TaskManager's ports are chosen by the OS
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": settings.port(topology.FLINK_RPC_PORT),
        "jobmanager.bind-host": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": settings.port(topology.FLINK_UI_PORT),
        "taskmanager.host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.rpc.port": "0",
        "taskmanager.data.port": 0,
        "blob.server.port": "0",
        # memory and slots
        "jobmanager.memory.process.size": "1g",
        "taskmanager.memory.process.size": "2560m",
        "taskmanager.numberOfTaskSlots": 4,
        # one instance of each task: on 2 cores shared with Kafka, PostgreSQL and the producers, a second one
        # only adds threads, exchanges and a second Python worker; the alerts' p99 at 2,000 tx/s was 195 ms at
        # parallelism 1 and 256-281 ms at 2 (docs/benchmarks.md, session 13). Raise it (here, or `flink run -p`)
        # with the cores: the slots are there
        "parallelism.default": 1,
        "jobmanager.execution.failover-strategy": "region",
        # state, checkpoints, savepoints
        "state.backend.type": "rocksdb",
        "execution.checkpointing.incremental": "true",
        # RocksDB's own checkpoint flushes its memtables on the task's thread, holding up every record behind
        # it: small memtables are flushed by RocksDB's background threads as they fill, leaving little to flush
        "state.backend.rocksdb.writebuffer.size": "4mb",
        # ... and the changelog takes that flush off every checkpoint: RocksDB checkpoints ("materializes")
        # every 5 minutes in the background; a checkpoint persists the state changes since (docs/flink.md)
        "state.changelog.enabled": "true",
        "state.changelog.storage": "filesystem",
        "state.changelog.dstl.dfs.base-path": paths.changelog.as_uri(),
        "state.changelog.periodic-materialize.interval": "5min",
        "execution.checkpointing.dir": (paths.checkpoints).as_uri(),
        "execution.checkpointing.savepoint-dir": (paths.savepoints).as_uri(),
        "execution.checkpointing.interval": "10s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": 2,
        "execution.checkpointing.min-pause": "2s",
        "execution.checkpointing.timeout": "2min",
        # restarts: quick at first, at most every 30s while a dependency (Kafka, a TaskManager) is away;
        # the backoff resets after 10 minutes of healthy running
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1s",
        "restart-strategy.exponential-delay.max-backoff": "30s",
        "restart-strategy.exponential-delay.backoff-multiplier": 2.0,
        "restart-strategy.exponential-delay.reset-backoff-threshold": "10min",
        "restart-strategy.exponential-delay.jitter-factor": 0.1,
        # Python: the job's client and the TaskManager's Python workers use this venv's interpreter
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # no JAAS module: Kafka clients get their SASL login per client (`sasl.jaas.config`), and the module
        # would write a jaas-<random 64-bit number>.conf file per process and log its name, a digit run that is
        # Luhn-valid one time in ten (the log scan of issue #6 then reports a card number)
        "security.module.factory.classes": "org.apache.flink.runtime.security.modules.ZookeeperModuleFactory",
        # everything Flink writes stays in the state folder
        "io.tmp.dirs": str(paths.tmp),
        "web.tmpdir": str(paths.tmp / "web"),
        "env.log.dir": str(paths.log),
        "env.pid.dir": str(paths.run),
    }
    # the JDBC archive sink writes TIMESTAMP(3) in the JVM's zone: keep the JVMs on UTC whatever the host says
    conf["env.java.opts.all"] = f"{java_opts} -Duser.timezone=UTC".strip()
    return conf


def render_yaml(conf: dict[str, object]) -> str:
    """Flat `key: value` lines; strings as JSON, which YAML reads as double-quoted scalars."""
    lines = ["# written by `rtfd up` (rtfd/stack/flink.py); edits are overwritten"]
    for key, value in conf.items():
        if key.startswith("env.java.opts"):  # read by bin/config.sh line by line: keep it unquoted
            lines.append(f"{key}: {value}")
        elif isinstance(value, str):
            lines.append(f"{key}: {json.dumps(value)}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def console_log4j(home: Path) -> str:
    """The wheel's log4j-console.properties without its rolling file: logs go to stdout, i.e. our log file."""
    keep = []
    for line in (home / "conf" / "log4j-console.properties").read_text().splitlines():
        if line.startswith("appender.rolling") or line.startswith("rootLogger.appenderRef.rolling"):
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


class FlinkProcess(ManagedProcess):
    """A Flink daemon started by its bash script, which execs java: the recorded pid is the JVM, and it
    leads its own process group, so signals go to the group (the TaskManager's Python workers included).

    A TaskManager that is SIGKILLed leaves its Python workers behind (they keep waiting for their JVM);
    `start` and `wait_stopped` clear such strays of this cluster, found by FLINK_CONF_DIR."""

    extra_ports: tuple[int, ...] = ()

    def start(self) -> int:
        for port in self.extra_ports:
            ensure_port_free(port, self.name)
        _kill_all(stray_processes(self.env.get("FLINK_CONF_DIR", "")))
        return super().start()

    def signal(self, sig: int) -> None:
        proc = self.process()
        if proc is not None:
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                super().signal(sig)

    def wait_stopped(self, timeout: float) -> None:
        proc = self.process()
        group = _group_members(proc.pid) if proc else []
        super().wait_stopped(timeout)
        _kill_all(group)  # Python workers that outlived their JVM
        _kill_all(stray_processes(self.env.get("FLINK_CONF_DIR", "")))

    def kill(self) -> None:
        proc = self.process()
        if proc is not None:
            _kill_all([proc, *_group_members(proc.pid)])


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != pgid and os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return members


def stray_processes(conf_dir: str) -> list[psutil.Process]:
    """Flink processes of this cluster (FLINK_CONF_DIR) whose process group lost its leader: leftovers of a
    TaskManager that died (its JVM, the PyFlink worker scripts and interpreters, their `tee` of the boot
    log). Clients (`flink run`) and live daemons lead or belong to live groups. Only processes whose command
    line names Flink: an environment variable alone is inherited too widely (a test process that once ran
    Flink code passes it to everything it starts, and a chaos run's load producers were killed with it)."""
    if not conf_dir:
        return []
    strays = []
    for proc in psutil.process_iter():
        try:
            pgid = os.getpgid(proc.pid)
            if pgid == proc.pid or psutil.pid_exists(pgid):
                continue
            if (proc.environ().get("FLINK_CONF_DIR") == conf_dir
                    and "flink" in " ".join(proc.cmdline()).lower()):
                strays.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return strays


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


class FlinkCluster:
    """Configures and describes the cluster under <state>/flink and manages its jobs over the REST API."""

    def __init__(self, settings: Settings, env: dict[str, str]):
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.paths = FlinkPaths(self.state / "flink")
        self.rest_port = settings.port(topology.FLINK_UI_PORT)
        self.rpc_port = settings.port(topology.FLINK_RPC_PORT)
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.env = {
            **env,
            "FLINK_CONF_DIR": str(self.paths.conf),
            "FLINK_LOG_DIR": str(self.paths.log),
            "FLINK_PID_DIR": str(self.paths.run),
            "FLINK_LIB_DIR": str(self.paths.lib),
        }

    # --- the two daemons ------------------------------------------------------------------------------------
    def configure(self) -> None:
        home = flink_home()
        for folder in (self.paths.conf, self.paths.log, self.paths.checkpoints, self.paths.changelog,
                       self.paths.savepoints, self.paths.tmp, self.paths.run):
            folder.mkdir(parents=True, exist_ok=True)
        conf = flink_config(self.settings, self.paths, _default_java_opts(home))
        (self.paths.conf / "config.yaml").write_text(render_yaml(conf))
        (self.paths.conf / "log4j-console.properties").write_text(console_log4j(home))
        # the `flink` client logs to a file in FLINK_LOG_DIR with its own configuration
        (self.paths.conf / "log4j-cli.properties").write_text((home / "conf" / "log4j-cli.properties").read_text())
        self._link_lib(home)

    def _link_lib(self, home: Path) -> None:
        """lib/ = the wheel's lib/ plus opt/flink-python: the JobManager builds a PyFlink job's graph itself
        and needs the Python operators (e.g. ArrowPythonScalarFunctionOperator) on its own classpath, as
        Flink's PyFlink images arrange; plus the connector jars `make jars` resolved (Kafka, JDBC, the
        PostgreSQL driver, avro-confluent), loaded once by the cluster instead of again with every submitted
        job (flink.config.shipped_jars). Symlinks, so the wheel and .jvm stay the one copy."""
        from rtfd.stack import jvm_dir  # the package imports this module

        self.paths.lib.mkdir(parents=True, exist_ok=True)
        wanted = {jar.name: jar for jar in (home / "lib").glob("*.jar")}
        wanted.update({jar.name: jar for jar in (home / "opt").glob("flink-python*.jar")})
        wanted.update({jar.name: jar for jar in (jvm_dir() / "flink").glob("*.jar")})
        for link in self.paths.lib.iterdir():
            if link.name not in wanted or not link.exists() or link.resolve() != wanted[link.name].resolve():
                link.unlink()
        for name, jar in wanted.items():
            if not (self.paths.lib / name).exists():
                (self.paths.lib / name).symlink_to(jar)

    def _process(self, name: str, script: str, port: int | None, extra: tuple[int, ...] = ()) -> FlinkProcess:
        proc = FlinkProcess(
            name=name,
            cmd=["bash", str(flink_home() / "bin" / script), "start-foreground"],
            run_dir=self.state / "run",
            log_dir=self.state / "logs",
            port=port,
            env=self.env,
            cwd=self.paths.root,
            stop_timeout=60.0,
        )
        proc.extra_ports = extra
        return proc

    def jobmanager(self) -> FlinkProcess:
        return self._process("flink-jobmanager", "jobmanager.sh", self.rest_port, (self.rpc_port,))

    def taskmanager(self) -> FlinkProcess:
        return self._process("flink-taskmanager", "taskmanager.sh", None)

    def processes(self) -> list[FlinkProcess]:
        return [self.jobmanager(), self.taskmanager()]

    # --- REST -----------------------------------------------------------------------------------------------
    def _get(self, path: str, timeout: float = 5.0) -> dict:
        response = httpx.get(f"{self.url}{path}", timeout=timeout)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict) -> dict:
        response = httpx.post(f"{self.url}{path}", json=body, timeout=10)
        if response.is_error:
            raise StackError(f"Flink REST {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def overview(self) -> dict:
        """GET /overview: taskmanagers, slots-total, slots-available, jobs-running, flink-version."""
        return self._get("/overview")

    def taskmanagers(self) -> int:
        return int(self.overview().get("taskmanagers", 0))

    def jobs(self) -> list[dict]:
        """Every job the JobManager knows, newest first."""
        jobs = self._get("/jobs/overview").get("jobs", [])
        return sorted(jobs, key=lambda j: j.get("start-time", 0), reverse=True)

    def find_job(self, name: str = JOB_NAME, live_only: bool = False) -> dict | None:
        """The newest live job with this name, else (unless live_only) the newest finished one."""
        named = [j for j in self.jobs() if j.get("name") == name]
        live = [j for j in named if j.get("state") not in TERMINAL_STATES]
        if live:
            return live[0]
        return None if live_only or not named else named[0]

    # --- submit ---------------------------------------------------------------------------------------------
    def checkpoint_dir(self, name: str) -> Path:
        """Each job name checkpoints into its own folder, so `latest_restore_point` never mixes jobs."""
        return self.paths.checkpoints / _safe(name)

    def submit(
        self,
        py_file: Path,
        name: str = JOB_NAME,
        from_path: Path | str | None = None,
        allow_non_restored: bool = False,
        timeout: float = 300,
    ) -> str:
        """`flink run -d -py FILE` against this cluster; return the new job's id."""
        if not Path(py_file).exists():
            raise StackError(f"no Flink job at {py_file}")
        cmd = [
            "bash", str(flink_home() / "bin" / "flink"), "run",
            "-m", f"127.0.0.1:{self.rest_port}", "-d",
            "-pyexec", sys.executable, "-pyclientexec", sys.executable,
            "-D", f"execution.checkpointing.dir={self.checkpoint_dir(name).as_uri()}",
        ]  # fmt: skip
        if from_path:
            # CLAIM: the new job owns the snapshot it starts from, as if it had taken it. The changelog state
            # backend cannot restore otherwise (NO_CLAIM makes the first checkpoint a full snapshot, which it
            # cannot take), and a retained checkpoint's files are then released once newer ones subsume it
            cmd += ["-s", str(from_path), "--claimMode", "claim"]
            if allow_non_restored:
                cmd.append("-n")
        cmd += ["-py", str(py_file)]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT,
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            raise StackError(f"`flink run` of {py_file} did not finish within {timeout:.0f}s:\n{_tail(out)}") from exc
        output = f"{result.stdout}\n{result.stderr}"
        match = re.search(r"JobID ([0-9a-f]{32})", output)
        if result.returncode != 0 or match is None:
            raise StackError(
                f"submitting {py_file} failed (flink run exit code {result.returncode}). Last lines of its "
                f"output (full client log in {self.paths.log}):\n{_tail(output)}"
            )
        return match.group(1)

    def wait_running(self, job_id: str, timeout: float = 180) -> dict:
        """Wait until the job and every one of its tasks run; fail with the job's root exception."""
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            try:
                last = self._get(f"/jobs/{job_id}")
            except (httpx.HTTPError, ValueError):
                time.sleep(1)
                continue
            state = last.get("state")
            if state in TERMINAL_STATES:
                raise StackError(f"job {last.get('name')} ({job_id}) is {state}: {self.root_exception(job_id)}")
            if state == "RUNNING" and all(v.get("status") == "RUNNING" for v in last.get("vertices", [])):
                return last
            time.sleep(1)
        raise StackError(
            f"job {job_id} was not running after {timeout:.0f}s (state {last.get('state')}); "
            f"{self.root_exception(job_id)}"
        )

    def root_exception(self, job_id: str) -> str:
        try:
            info = self._get(f"/jobs/{job_id}/exceptions")
        except (httpx.HTTPError, ValueError):
            return "no exception recorded"
        history = info.get("exceptionHistory", {}).get("entries", [])
        text = history[0].get("stacktrace") if history else info.get("root-exception")
        return _tail(text or "no exception recorded", 15)

    def ensure_job(
        self, py_file: Path = JOB_FILE, name: str = JOB_NAME, restore: bool = True, timeout: float = 300
    ) -> tuple[str, bool, Path | None]:
        """Submit unless a live job of that name exists: (job id, submitted now?, restored from)."""
        live = self.find_job(name, live_only=True)
        if live is not None:
            return live["jid"], False, None
        restore_from = self.latest_restore_point(name) if restore else None
        job_id = self.submit(py_file, name, restore_from, timeout=timeout)
        return job_id, True, restore_from

    def latest_restore_point(self, name: str = JOB_NAME) -> Path | None:
        """The newest complete savepoint or retained checkpoint of this job under the state folder."""
        candidates = [p.parent for p in self.checkpoint_dir(name).glob("*/chk-*/_metadata")]
        candidates += [p.parent for p in self.paths.savepoints.glob(f"{_safe(name)}/savepoint-*/_metadata")]
        if not candidates:
            return None
        return max(candidates, key=lambda p: (p / "_metadata").stat().st_mtime)

    # --- savepoints, stop, cancel ---------------------------------------------------------------------------
    def savepoint_dir(self, name: str) -> Path:
        return self.paths.savepoints / _safe(name)

    def savepoint(self, job_id: str, name: str = JOB_NAME, timeout: float = 120) -> Path:
        """Trigger a savepoint of a running job; return its folder once complete."""
        trigger = self._post(
            f"/jobs/{job_id}/savepoints",
            {"target-directory": self.savepoint_dir(name).as_uri(), "cancel-job": False},
        )["request-id"]
        return self._await_savepoint(job_id, trigger, timeout)

    def stop_with_savepoint(self, job_id: str, name: str = JOB_NAME, timeout: float = 120) -> Path:
        """Stop the job gracefully: a final savepoint, then the job ends (FINISHED)."""
        trigger = self._post(
            f"/jobs/{job_id}/stop", {"targetDirectory": self.savepoint_dir(name).as_uri(), "drain": False}
        )["request-id"]
        return self._await_savepoint(job_id, trigger, timeout)

    def _await_savepoint(self, job_id: str, trigger: str, timeout: float) -> Path:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self._get(f"/jobs/{job_id}/savepoints/{trigger}")
            if info.get("status", {}).get("id") == "COMPLETED":
                op = info.get("operation", {})
                if "failure-cause" in op:
                    cause = op["failure-cause"].get("stack-trace", str(op["failure-cause"]))
                    raise StackError(f"savepoint of job {job_id} failed:\n{_tail(cause, 15)}")
                return _local_path(op["location"])
            time.sleep(0.5)
        raise StackError(f"savepoint of job {job_id} did not complete within {timeout:.0f}s")

    def cancel(self, job_id: str, timeout: float = 60) -> None:
        """Cancel without a savepoint (its retained checkpoints stay)."""
        response = httpx.patch(f"{self.url}/jobs/{job_id}", params={"mode": "cancel"}, timeout=10)
        if response.is_error:
            raise StackError(f"cancelling job {job_id} failed: {response.status_code} {response.text[:300]}")
        self.wait_state(job_id, TERMINAL_STATES, timeout)

    def wait_state(self, job_id: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = self._get(f"/jobs/{job_id}").get("state", "?")
            if state in states:
                return state
            time.sleep(0.5)
        raise StackError(f"job {job_id} is {state}, not {'/'.join(sorted(states))}, after {timeout:.0f}s")

    # --- status ---------------------------------------------------------------------------------------------
    def job_status(self, job_id: str) -> dict:
        """State, start time, uptime, vertices, last checkpoint and restart count of one job."""
        job = self._get(f"/jobs/{job_id}")
        status = {
            "id": job_id,
            "name": job.get("name"),
            "state": job.get("state"),
            "start_time": job.get("start-time"),
            "duration_ms": job.get("duration"),
            "vertices": [
                {"name": v.get("name"), "parallelism": v.get("parallelism"), "status": v.get("status")}
                for v in job.get("vertices", [])
            ],
        }
        try:
            ckpt = self._get(f"/jobs/{job_id}/checkpoints")
            counts = ckpt.get("counts", {})
            latest = (ckpt.get("latest") or {}).get("completed") or {}
            status["checkpoints"] = {
                "completed": counts.get("completed", 0),
                "failed": counts.get("failed", 0),
                "in_progress": counts.get("in_progress", 0),
                "last_id": latest.get("id"),
                "last_time": latest.get("latest_ack_timestamp"),
                "last_size": latest.get("checkpointed_size", latest.get("state_size")),
                "last_path": latest.get("external_path"),
            }
            restored = (ckpt.get("latest") or {}).get("restored") or {}
            if restored:
                status["restored_from"] = restored.get("external_path")
        except (httpx.HTTPError, ValueError):
            status["checkpoints"] = None
        status["restarts"] = self._restarts(job_id)
        return status

    def _restarts(self, job_id: str) -> int | None:
        try:
            metrics = self._get(f"/jobs/{job_id}/metrics?get=numRestarts")
            return int(float(metrics[0]["value"])) if metrics else None
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None

    def describe(self, name: str = JOB_NAME) -> dict:
        """Best-effort summary for `rtfd status`: cluster up/down, slots, the job."""
        report: dict = {"url": self.url}
        try:
            ov = self.overview()
        except (httpx.HTTPError, ValueError) as exc:
            report["cluster"] = "down"
            report["error"] = f"Flink REST API unreachable at {self.url}: {exc.__class__.__name__}"
            return report
        report.update(
            cluster="up",
            version=ov.get("flink-version"),
            taskmanagers=ov.get("taskmanagers"),
            slots_total=ov.get("slots-total"),
            slots_available=ov.get("slots-available"),
        )
        try:
            job = self.find_job(name)
            report["job"] = self.job_status(job["jid"]) if job else None
        except (httpx.HTTPError, ValueError) as exc:
            report["job_error"] = str(exc)
        return report


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _local_path(location: str) -> Path:
    """'file:/x/y' or 'file:///x/y' -> Path('/x/y')."""
    return Path(re.sub(r"^file:(//)?", "", location))


_JAVA_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more)")


def _tail(text: str, lines: int = 40) -> str:
    """The last lines of a client's output without Java stack frames (the Python traceback and the
    `Caused by:` chain are what say what went wrong)."""
    kept = [line for line in text.strip().splitlines() if not _JAVA_FRAME.match(line)]
    return "\n".join(kept[-lines:])
