"""The Flink cluster of the native stack: its configuration, a real PyFlink job through submit, savepoint,
stop and restore, a TaskManager crash the supervisor repairs, and a cluster restart that resumes from the
retained checkpoint. The job is tests/stack/flink_test_job.py, submitted by the same code as flink/job.py."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml
from click.testing import CliRunner

from rtfd.cli import cli
from rtfd.config import Settings
from rtfd.stack import NativeStack
from rtfd.stack.flink import FlinkCluster, FlinkPaths, flink_config, render_yaml

TEST_JOB = Path(__file__).with_name("flink_test_job.py")
TEST_JOB_NAME = "rtfd-test-datagen"


def eventually(check: Callable[[], object], timeout: float, what: str):
    """Poll `check` until it returns something truthy; bounded, and says what it waited for."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - the cluster may be between states
            last_error = exc
        time.sleep(1)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f}s (last error: {last_error})")


# --- configuration (no cluster) ---------------------------------------------------------------------------
def test_config_moves_ports_by_the_offset_and_keeps_state_in_the_state_folder(tmp_path):
    settings = Settings(state_dir=tmp_path, port_offset=400)
    paths = FlinkPaths(tmp_path / "flink")
    conf = flink_config(settings, paths)
    assert conf["rest.port"] == 8481 and conf["jobmanager.rpc.port"] == 6523
    assert {conf[k] for k in ("rest.bind-address", "jobmanager.bind-host", "taskmanager.bind-host")} == {"127.0.0.1"}
    assert conf["execution.checkpointing.dir"] == f"file://{tmp_path}/flink/checkpoints"
    assert conf["execution.checkpointing.savepoint-dir"] == f"file://{tmp_path}/flink/savepoints"
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert conf["python.executable"] == conf["python.client.executable"] == sys.executable
    assert "python.execution-mode" not in conf  # the job chooses
    assert "JaasModuleFactory" not in conf["security.module.factory.classes"]  # no jaas-<random>.conf per process
    assert yaml.safe_load(render_yaml(conf)) == conf  # what Flink reads is what we meant


def test_config_files_written_under_the_state_folder(tmp_path):
    cluster = FlinkCluster(Settings(state_dir=tmp_path, port_offset=400), {})
    cluster.configure()
    conf = yaml.safe_load((tmp_path / "flink" / "conf" / "config.yaml").read_text())
    assert conf["env.java.opts.all"].startswith("--add-")  # the wheel's Java 17 module flags are kept
    assert conf["env.log.dir"] == str(tmp_path / "flink" / "log")
    log4j = (tmp_path / "flink" / "conf" / "log4j-console.properties").read_text()
    assert "ConsoleAppender" in log4j and "RollingFile" not in log4j  # stdout only: our log file
    assert cluster.jobmanager().env["FLINK_CONF_DIR"] == str(tmp_path / "flink" / "conf")


def test_latest_restore_point_is_the_newest_complete_snapshot(tmp_path):
    cluster = FlinkCluster(Settings(state_dir=tmp_path), {})
    old_chk = cluster.checkpoint_dir("job-a") / ("a" * 32) / "chk-7"
    savepoint = cluster.savepoint_dir("job-a") / "savepoint-aaaaaa-1"
    newest_chk = cluster.checkpoint_dir("job-a") / ("b" * 32) / "chk-3"
    incomplete = cluster.checkpoint_dir("job-a") / ("b" * 32) / "chk-4"  # no _metadata: still being written
    other_job = cluster.checkpoint_dir("job-b") / ("c" * 32) / "chk-9"
    assert cluster.latest_restore_point("job-a") is None
    for i, folder in enumerate([old_chk, savepoint, newest_chk, other_job]):
        folder.mkdir(parents=True)
        (folder / "_metadata").write_bytes(b"x")
        os.utime(folder / "_metadata", (1_000_000 + i, 1_000_000 + i))
    incomplete.mkdir()
    assert cluster.latest_restore_point("job-a") == newest_chk
    os.utime(savepoint / "_metadata", (2_000_000, 2_000_000))
    assert cluster.latest_restore_point("job-a") == savepoint


# --- the real cluster -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(stack: Settings):
    flink = NativeStack(stack).flink
    yield flink
    live = flink.find_job(TEST_JOB_NAME, live_only=True)  # free its slot for whatever runs next
    if live is not None:
        flink.cancel(live["jid"])


def running_test_job(cluster: FlinkCluster, restore: bool = False) -> str:
    job_id, _submitted, _restored = cluster.ensure_job(TEST_JOB, TEST_JOB_NAME, restore=restore)
    cluster.wait_running(job_id)
    return job_id


def fully_running(cluster: FlinkCluster, job_id: str) -> dict | None:
    status = cluster.job_status(job_id)
    if status["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in status["vertices"]):
        return status
    return None


def test_cluster_has_one_taskmanager_on_loopback(stack: Settings, cluster: FlinkCluster):
    overview = cluster.overview()
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == 4
    assert cluster.rest_port == stack.port(8081)
    native = NativeStack(stack)
    listening = {}
    for name in ("flink-jobmanager", "flink-taskmanager"):
        proc = native.component(name).process()
        assert proc is not None and proc.name() == "java"  # the script exec'd the JVM: we hold its pid
        listening[name] = {c.laddr.port: c.laddr.ip for c in proc.net_connections("tcp") if c.status == "LISTEN"}
    loopback = {"127.0.0.1", "::ffff:127.0.0.1"}
    assert listening["flink-jobmanager"] and set(listening["flink-jobmanager"].values()) <= loopback
    # the TaskManager's own RPC and data ports; the gRPC servers Beam opens for Python workers are not Flink's
    (tm,) = cluster._get("/taskmanagers")["taskmanagers"]
    rpc_port = int(tm["path"].split("@127.0.0.1:")[1].split("/")[0])
    assert listening["flink-taskmanager"][rpc_port] in loopback
    assert listening["flink-taskmanager"][tm["dataPort"]] in loopback
    report = native.status()["flink"]
    assert report["cluster"] == "up" and report["taskmanagers"] == 1
    # Flink's JAAS module would write jaas-<random 64-bit number>.conf per process and log the name: a digit
    # run that is Luhn-valid one time in ten, which the log scan (tests/security/test_logs.py) reports
    logs = [p for p in (stack.state_dir / "logs").glob("flink-*.log")] + list(cluster.paths.log.glob("*.log"))
    assert logs and not [p for p in logs if "Jaas file will be created" in p.read_text(errors="replace")]


def test_submit_is_idempotent_and_the_cli_reports_the_job(stack: Settings, cluster: FlinkCluster, monkeypatch):
    job_id = running_test_job(cluster)
    again, submitted, _ = cluster.ensure_job(TEST_JOB, TEST_JOB_NAME)
    assert (again, submitted) == (job_id, False)
    assert [j["jid"] for j in cluster.jobs() if j["name"] == TEST_JOB_NAME and j["state"] == "RUNNING"] == [job_id]

    monkeypatch.setenv("RTFD_STATE_DIR", str(stack.state_dir))
    monkeypatch.setenv("RTFD_PORT_OFFSET", str(stack.port_offset))
    result = CliRunner().invoke(cli, ["job", "status", "--job-id", job_id, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["job"]["state"] == "RUNNING" and report["job"]["name"] == TEST_JOB_NAME
    assert [v["parallelism"] for v in report["job"]["vertices"]] == [1, 1]


def test_savepoint_stop_and_restore(cluster: FlinkCluster):
    job_id = running_test_job(cluster)
    savepoint = cluster.savepoint(job_id, TEST_JOB_NAME)
    assert (savepoint / "_metadata").exists()

    final = cluster.stop_with_savepoint(job_id, TEST_JOB_NAME)
    assert (final / "_metadata").exists()
    assert cluster.wait_state(job_id, {"FINISHED"}, 60) == "FINISHED"
    assert cluster.latest_restore_point(TEST_JOB_NAME) == final

    restored_id, submitted, restored_from = cluster.ensure_job(TEST_JOB, TEST_JOB_NAME, restore=True)
    assert submitted and restored_id != job_id and restored_from == final
    cluster.wait_running(restored_id)
    status = cluster.job_status(restored_id)
    assert status["state"] == "RUNNING"
    assert status.get("restored_from", "").endswith(final.name)
    # restores claim their snapshot (the changelog state backend needs it), yet a savepoint is the user's
    # rollback point: it must outlive the checkpoints that subsume it (2 retained)
    eventually(lambda: cluster.job_status(restored_id)["checkpoints"]["completed"] >= 3, 120, "three checkpoints")
    assert (final / "_metadata").exists()


def test_taskmanager_crash_is_repaired_and_the_job_recovers(stack: Settings, cluster: FlinkCluster):
    job_id = running_test_job(cluster, restore=True)
    eventually(lambda: cluster.job_status(job_id)["checkpoints"]["completed"] >= 1, 120, "a first checkpoint")
    restarts_before = cluster.job_status(job_id)["restarts"] or 0
    taskmanager = NativeStack(stack).component("flink-taskmanager")
    old_pid = taskmanager.pid
    psutil.Process(old_pid).kill()  # SIGKILL the JVM, as a crash would

    eventually(lambda: taskmanager.is_running() and taskmanager.pid != old_pid, 120, "the supervisor's restart")
    status = eventually(
        lambda: (s := fully_running(cluster, job_id)) and (s["restarts"] or 0) > restarts_before and s,
        300,
        "the job to run again after the TaskManager crash",
    )
    assert status["restored_from"]  # it came back from a checkpoint
    assert cluster.overview()["taskmanagers"] >= 1


def test_cluster_restart_resumes_from_the_retained_checkpoint(
    stack: Settings, cluster: FlinkCluster, flink_job_enabled: bool
):
    job_id = running_test_job(cluster, restore=True)
    before = eventually(
        lambda: (c := cluster.job_status(job_id)["checkpoints"]) and c["completed"] >= 1 and c, 120, "a checkpoint"
    )
    native = NativeStack(stack)
    # what `rtfd down` does to Flink: supervisor first, then TaskManager, then JobManager
    for name in ("supervisor", "flink-taskmanager", "flink-jobmanager"):
        native.component(name).stop()
    retained = cluster.latest_restore_point(TEST_JOB_NAME)
    assert retained is not None and retained.name.startswith("chk-")
    assert int(retained.name.removeprefix("chk-")) >= before["last_id"]

    native.up(brokers=3, banks=(), flink=True, job=flink_job_enabled)
    new_id, submitted, restored_from = cluster.ensure_job(TEST_JOB, TEST_JOB_NAME, restore=True)
    assert submitted and restored_from == retained
    cluster.wait_running(new_id)
    assert cluster.job_status(new_id)["restored_from"].endswith(f"{job_id}/{retained.name}")
