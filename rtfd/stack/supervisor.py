"""The supervisor: a small process that restarts any stack component that dies, with a restart budget.

`rtfd up` starts it last; `rtfd down` stops it first, so a deliberate stop is never undone.
A component can be held down for a while (`hold`): fault injection (`rtfd chaos`) keeps, say, the registry
stopped for 30 s without the supervisor undoing it; a hold expires by itself, so a crashed caller cannot leave
a component down for good.
Run as `python -m rtfd.stack.supervisor` with the stack's RTFD_* environment.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import defaultdict, deque
from pathlib import Path

from rtfd.config import Settings

CHECK_EVERY_S = 2.0
MAX_RESTARTS = 5  # per component within RESTART_WINDOW_S; past that it stays down and the log says why
RESTART_WINDOW_S = 120.0

log = logging.getLogger("rtfd.supervisor")


def hold_file(state_dir: Path, name: str) -> Path:
    return state_dir / "run" / "hold" / name


def hold(state_dir: Path, name: str, seconds: float) -> Path:
    """Ask the supervisor to leave `name` alone for `seconds` (the file holds the expiry, epoch seconds)."""
    path = hold_file(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time() + seconds:.3f}")
    return path


def release(state_dir: Path, name: str) -> None:
    hold_file(state_dir, name).unlink(missing_ok=True)


def is_held(state_dir: Path, name: str) -> bool:
    try:
        return time.time() < float(hold_file(state_dir, name).read_text())
    except (FileNotFoundError, ValueError):
        return False


def main() -> None:
    from rtfd.stack import NativeStack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    running = True

    def stop(_signum, _frame):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stack = NativeStack(Settings())
    restarts: dict[str, deque[float]] = defaultdict(deque)
    given_up: set[str] = set()
    log.info("supervising %s", ", ".join(p.name for p in stack.components()))
    resubmit_job = False
    while running:
        if resubmit_job:
            resubmit_job = not resubmit(stack)
        for proc in stack.components():
            if not running or proc.name in given_up or proc.is_running() or is_held(stack.state, proc.name):
                continue
            window = restarts[proc.name]
            now = time.monotonic()
            while window and now - window[0] > RESTART_WINDOW_S:
                window.popleft()
            if len(window) >= MAX_RESTARTS:
                given_up.add(proc.name)
                log.error("%s died %d times in %.0fs; leaving it down. Last log lines:\n%s",
                          proc.name, MAX_RESTARTS, RESTART_WINDOW_S, proc.tail(15))
                continue
            window.append(now)
            try:
                pid = proc.start()
                log.warning("%s was down; restarted it (pid %d)", proc.name, pid)
                if proc.name == "flink-jobmanager" and stack.settings.stack_info().get("job"):
                    resubmit_job = True  # no HA: a new JobManager knows no jobs
            except Exception as exc:  # noqa: BLE001 - e.g. its port still held; retry next round
                log.warning("%s is down and could not be restarted yet: %s", proc.name, exc)
        deadline = time.monotonic() + CHECK_EVERY_S
        while running and time.monotonic() < deadline:
            time.sleep(0.2)
    log.info("supervisor stopped")


def resubmit(stack) -> bool:
    """After a JobManager restart, submit the fraud job again from its newest checkpoint once the cluster
    has a TaskManager; True when done (or when nothing is to be done)."""
    try:
        if stack.flink.taskmanagers() < 1:
            return False
        job_id = stack.submit_job()
        log.warning("fraud job resubmitted after the JobManager restart (%s)", job_id)
        return True
    except Exception as exc:  # noqa: BLE001 - cluster still coming up; next round
        log.info("fraud job not resubmitted yet: %s", exc)
        return False


if __name__ == "__main__":
    main()
