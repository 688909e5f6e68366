"""Session fixtures: the real native stack (Kafka KRaft 3+1, PostgreSQL, schema registry, a Flink cluster
and, once flink/job.py exists, the fraud job), started once.

Set RTFD_TEST_EXTERNAL_STACK=1 to run the tests against a stack you already started (its RTFD_* settings),
which makes iterating on one test fast; CI always starts and stops its own. RTFD_TEST_FLINK_JOB=0 starts the
Flink cluster without submitting flink/job.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from rtfd.config import Settings

# beside a developer's own `rtfd up` on the default ports; RTFD_TEST_PORT_OFFSET lets test runs sit side by side
TEST_PORT_OFFSET = int(os.environ.get("RTFD_TEST_PORT_OFFSET", "100"))
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """The chaos set last: it kills and restarts components of the session stack that every other test shares
    (each scenario undoes its fault, but a test after it should not depend on that)."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)  # stable: order kept otherwise


def processes_under(state: Path) -> list[psutil.Process]:
    """Every live process started for this state folder: its command line mentions the folder, or its
    environment carries it (Flink's Python workers), waiting briefly for those already exiting. Zombies
    (exited, awaiting their parent's wait) do not count."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(state) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
            elif proc.pid != os.getpid() and proc.environ().get("RTFD_STATE_DIR") == str(state):
                found.append(proc)
        except psutil.Error:
            continue
    _gone, alive = psutil.wait_procs(found, timeout=5)
    return [proc for proc in alive if not _is_zombie(proc)]


def _is_zombie(proc: psutil.Process) -> bool:
    """Exited, but not yet reaped by a parent (Dagster's run workers, orphaned to an init that reaps late):
    it runs nothing and holds no port; kill() cannot remove it."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True  # gone meanwhile


@pytest.fixture(scope="session")
def flink_job_enabled() -> bool:
    """Whether the session stack runs the fraud job (flink/job.py exists and RTFD_TEST_FLINK_JOB is not 0)."""
    return os.environ.get("RTFD_TEST_FLINK_JOB", "1") != "0" and (PROJECT_ROOT / "flink" / "job.py").exists()


@pytest.fixture(scope="session")
def stack(flink_job_enabled: bool) -> Settings:
    """Settings pointing at a running native stack with three brokers, Flink and no producers."""
    from rtfd.stack import NativeStack, kafka

    if os.environ.get("RTFD_TEST_EXTERNAL_STACK"):
        kafka.ensure_acls(Settings(), extra=kafka.grants_for_tests())  # the services run on tests' own topics
        yield Settings()
        return

    state = Path(tempfile.mkdtemp(prefix="rtfd-test-"))
    state.chmod(0o755)  # PostgreSQL runs as an unprivileged user and must reach its data folder
    settings = Settings(state_dir=state, port_offset=TEST_PORT_OFFSET)
    native = NativeStack(settings)
    try:
        native.up(brokers=3, banks=(), flink=True, job=flink_job_enabled)
        kafka.ensure_acls(settings, extra=kafka.grants_for_tests())  # the services run on tests' own topics (test-*)
        yield settings
    finally:
        native.down()
        leftovers = processes_under(state)
        for proc in leftovers:  # never leave a JVM behind, even when down() missed it
            try:
                proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(state, ignore_errors=True)
        assert not leftovers, f"processes outlived `down`: {[p.info['cmdline'][:3] for p in leftovers]}"


@pytest.fixture
def unique_topic(stack: Settings):
    """A fresh topic name (created by the test) so tests never read each other's leftovers."""
    return f"test-{uuid.uuid4().hex[:10]}"
