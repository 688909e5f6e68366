"""One chaos run: load, fault, recovery, drain, reconciliation, verdict.

The load is `rtfd bench`'s (bank producer processes with their own bank ids, delivered ids written to files);
a scenario injects its fault(s) while the load runs and measures each recovery with `Run.wait_healthy`. After
the load stops the run waits (bounded) until the pipeline drained, then reconciles (rtfd.chaos.reconcile).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen, TimeoutExpired

from rtfd import topology
from rtfd.bench import BenchConfig, delivered_ids, start_producers, wait_archived
from rtfd.chaos import probes
from rtfd.chaos.reconcile import dlq_keys, reconcile, table_alerts, wait_alerts_stored
from rtfd.config import Settings
from rtfd.stack import NativeStack, StackError

STABLE_S = 15.0  # a recovery counts once everything stayed healthy this long (a failover can come in waves)


@dataclass
class ChaosConfig:
    tps: float = 200.0  # total across the load's producers; the job archives ~750/s on a quiet 2-core box
    duration: float = 60.0  # seconds of load around the fault: half before it, half after recovery
    short: bool = False  # the test suite's version: shorter outages, fewer bad records
    producers: int = 2  # one v1 and one v2 writer
    fraud_rate: float = 0.02  # enough alerts per run to check the alert path
    drain_timeout: float = 600.0
    flow_timeout: float = 180.0  # the pipeline must carry the run's first transactions within this
    # each scenario's recovery bound times this: the test suite's runs share two cores with the rest of the
    # suite (and, on the development machine, other engineers' stacks), where a JVM restart alone takes minutes
    bound_scale: float = 1.0
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    @classmethod
    def for_tests(cls, **overrides) -> ChaosConfig:
        return cls(**{"tps": 100.0, "duration": 12.0, "short": True, "drain_timeout": 300.0, "bound_scale": 2.0,
                      **overrides})


class Load:
    """The bench's producer processes, run until stopped (SIGTERM: they flush and write their ids)."""

    def __init__(self, cfg: ChaosConfig, scenario: str, child_env: dict[str, str]):
        self.bench = BenchConfig(producers=cfg.producers, tps=cfg.tps, duration=3600, fraud_rate=cfg.fraud_rate,
                                 baseline=False, run_id=f"{cfg.run_id}-{scenario}", bank_prefix="chaos")
        self.ids_dir = Path(tempfile.mkdtemp(prefix=f"rtfd-chaos-{scenario}-"))
        self.procs: list[Popen] = []
        self.exit_codes: list[int | None] = []
        self.started_ms = 0
        self.child_env = child_env  # the stack's RTFD_* settings (state folder, port offset) for the producers

    @property
    def banks(self) -> list[str]:
        return self.bench.banks

    def start(self) -> None:
        self.started_ms = int(time.time() * 1000)
        # The producers are processes that read their Settings from the environment. The run's Settings may
        # not come from it (the test suite builds them for its own state folder and port offset): without
        # this they would write to the default ports, to nothing, or to another stack on this machine.
        with _environ(self.child_env):
            self.procs = start_producers(self.bench, self.ids_dir)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=90)  # the producer's final flush takes up to 60 s
            except TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.exit_codes = [p.returncode for p in self.procs]

    def delivered(self) -> set[str]:
        return delivered_ids(self.bench, self.ids_dir)

    def log_tail(self, lines: int = 5) -> dict[str, str]:
        out = {}
        for bank in self.banks:
            path = self.ids_dir / f"{bank}.log"
            if path.exists():
                out[bank] = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.ids_dir, ignore_errors=True)


class Run:
    """What a scenario works with: the stack, the load, recovery measurement and undo actions."""

    def __init__(self, settings: Settings, cfg: ChaosConfig, scenario: str, say: Callable[[str], None]):
        self.settings = settings
        self.cfg = cfg
        self.scenario = scenario
        self.say = say
        self.stack = NativeStack(settings)
        self.load = Load(cfg, scenario, self.stack.child_env)
        self.phases: list[dict] = []
        self.undo: list[Callable[[], None]] = []
        self.bad_prefix: str | None = None
        self.sent: set[str] = set()  # transactions the scenario sent itself (acknowledged), reconciled with the load's
        self.alert_expected: set[str] = set()  # transactions among them that must raise an alert
        self.injected: dict = {}
        self.info: dict = {}
        # the components that run before the fault are the ones that must run again after it
        self.baseline = {p.name for p in self.stack.components() if p.is_running()}
        self.info["components"] = sorted(self.baseline)

    @property
    def flink(self) -> bool:
        return bool(self.settings.stack_info().get("flink", False))

    def healthy(self, since_ms: Callable[[], int] | None = None,
                extra: dict[str, probes.Probe] | None = None) -> probes.Probe:
        """Every component up and healthy; with `since_ms`, also an archive row written after then."""
        checks = {
            "components": probes.components_running(self.stack, self.baseline),
            "kafka": probes.kafka_fully_replicated(self.settings),
            "postgres": probes.postgres_accepts(self.settings),
            "registry": probes.registry_answers(self.settings),
        }
        if self.flink:
            checks["flink job"] = probes.flink_job_running(self.stack)
        checks.update(extra or {})
        if since_ms is not None:
            checks["archive written"] = probes.archive_written(self.settings, self.load.banks, since_ms)
        return probes.all_of(checks)

    def wait_healthy(self, label: str, fault_started: float, fault_ended: float, bound_s: float,
                     extra: dict[str, probes.Probe] | None = None, lag_before_s: float | None = None,
                     **info) -> dict:
        """Poll until every component is healthy, then until the job writes new archive rows (first inserted
        after the components were healthy, so in-flight writes of a crashed TaskManager do not count), and all
        of it stays so for STABLE_S: the recovery, counted from the end of the fault (the crash, or the restart
        of a component held down) to the first archive write of that stable period; its bound is the
        scenario's `bound_s` times the run's `bound_scale`. Then, as a figure beside
        it, until a transaction sent after the fault ended is archived (caught up: includes any backlog; not
        measured in the short version). Waits up to twice the bound, so a slow recovery is measured rather
        than cut off. `waited_on` lists what was still unhealthy, and since when."""
        bound_s *= self.cfg.bound_scale
        since_ms = int(fault_ended * 1000)
        check = self.healthy(None, extra)
        deadline = fault_ended + max(2 * bound_s, bound_s + 60)
        verdict = probes.Verdict(False, "not checked")
        waited_on: list[tuple[float, str]] = []
        healthy_since: float | None = None  # components healthy without a break since then
        written_at: float | None = None
        ok = False
        while time.time() < deadline:
            verdict = check()
            if verdict.ok and healthy_since is None:
                healthy_since = time.time()
            if verdict.ok and written_at is None:
                verdict = probes.archive_written(self.settings, self.load.banks,
                                                 lambda t=healthy_since: int(t * 1000))()
                written_at = time.time() if verdict.ok else None
            if not verdict.ok and not verdict.why.startswith("no archive row"):
                healthy_since = written_at = None  # broke again: the recovery starts over
            if written_at is not None and time.time() - healthy_since >= STABLE_S:
                ok = True
                break
            if not verdict.ok:
                what = verdict.why.split(":")[0]
                if not waited_on or waited_on[-1][1].split(":")[0] != what:
                    waited_on.append((round(time.time() - fault_ended, 1), verdict.why[:160]))
            time.sleep(0.5)
        verdict = verdict if not ok else probes.Verdict(True)
        recovered = written_at - fault_ended if ok else None
        caught_up = None
        if verdict.ok and not self.cfg.short:  # the short version leaves the backlog to the drain
            fresh = probes.archive_flowing(self.settings, self.load.banks, lambda: since_ms)
            while time.time() < deadline and not fresh().ok:
                time.sleep(0.5)
            caught_up = round(time.time() - fault_ended, 1) if fresh().ok else None
        phase = {
            "fault": label,
            "fault_s": round(fault_ended - fault_started, 1),
            "recovery_s": round(recovered, 1) if recovered is not None else None,
            "bound_s": bound_s,
            "ok": recovered is not None and recovered <= bound_s,
            "caught_up_s": caught_up,
            "archive_lag_before_s": lag_before_s,
            "waited_on": waited_on,
            **({} if verdict.ok else {"unhealthy": verdict.why}),
            **info,
        }
        self.phases.append(phase)
        shown = f"{phase['recovery_s']}s" if recovered is not None else f"NOT within {deadline - fault_ended:.0f}s"
        self.say(f"  {label}: healthy again after {shown} (bound {bound_s:.0f}s), caught up after "
                 f"{caught_up}s (archive lag before the fault: {lag_before_s}s)"
                 + ("" if verdict.ok else f"; still: {verdict.why}"))
        return phase

    def archive_lag(self) -> float | None:
        return probes.archive_lag_s(self.settings, self.load.banks)

    def keep_load(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


def run_scenario(settings: Settings, scenario, cfg: ChaosConfig, say: Callable[[str], None] = print) -> dict:
    """Run one scenario (an object of rtfd.chaos.scenarios) and return its report; never raises on a failed
    check (the report says FAIL), only on misuse (stack not up)."""
    run = Run(settings, cfg, scenario.name, say)
    say(f"chaos {scenario.name}: {scenario.summary}")
    if scenario.needs_flink and not run.flink:
        raise StackError(f"scenario {scenario.name} needs the Flink job; start the stack with it (`rtfd up`)")
    before = run.healthy()
    if not _wait(lambda: before().ok, 120):
        raise StackError(f"the stack is not healthy before the run: {before().why}; see `rtfd status`")
    if run.flink:
        drained = probes.flink_backlog(settings)
        if not _wait(lambda: drained().ok, cfg.drain_timeout):
            raise StackError(f"the pipeline did not drain its backlog within {cfg.drain_timeout:.0f}s before the "
                             f"run: {drained().why}")
    start = {t: probes.end_offsets(settings, t) for t in (topology.FRAUD_ALERTS, topology.TRANSACTIONS_DLQ)}
    started = time.time()
    error = None
    try:
        run.load.start()
        flowing = probes.archive_flowing(settings, run.load.banks, lambda: run.load.started_ms)
        if not _wait(lambda: flowing().ok, cfg.flow_timeout):
            raise StackError(f"the run's transactions did not reach the archive within {cfg.flow_timeout:.0f}s; "
                             "is the Flink job running (`rtfd job status`)?")
        say(f"  load flowing: {cfg.tps:.0f} tx/s from {len(run.load.banks)} producer(s)")
        run.keep_load(cfg.duration / 2)
        scenario.inject_and_recover(run)
        run.keep_load(cfg.duration / 2)
    except Exception as exc:  # noqa: BLE001 - reported, and the run still cleans up and reconciles
        error = f"{type(exc).__name__}: {exc}"
        say(f"  error: {error}")
    finally:
        for undo in reversed(run.undo):
            try:
                undo()
            except Exception as exc:  # noqa: BLE001
                say(f"  undo failed: {exc}")
        run.load.stop()
    say("  load stopped; waiting for the pipeline to drain")
    delivered = run.load.delivered() | run.sent
    wait_archived(settings.postgres_dsn, run.load.banks, delivered, cfg.drain_timeout)
    if run.alert_expected:  # alerts trail the archive (event-time features): give them time
        _wait(lambda: run.alert_expected <= {t for _a, t in table_alerts(settings.postgres_dsn, run.load.banks)}, 180)
    wait_alerts_stored(settings, start[topology.FRAUD_ALERTS], run.load.banks, 60)
    if run.bad_prefix:
        expected = set(run.injected.get("accepted", []))
        _wait(lambda: expected <= set(dlq_keys(settings, start[topology.TRANSACTIONS_DLQ], run.bad_prefix)), 120)
    counts = reconcile(settings, run.load.banks, delivered, start, run.bad_prefix)
    stored_for = {t for _a, t in table_alerts(settings.postgres_dsn, run.load.banks)}
    counts["alerts_expected"] = len(run.alert_expected)
    counts["alerts_expected_stored"] = len(run.alert_expected & stored_for)
    report = {
        "scenario": scenario.name,
        "summary": scenario.summary,
        "needs_alerts": scenario.needs_alerts,
        "config": {k: v for k, v in cfg.__dict__.items()},
        "banks": run.load.banks,
        "phases": run.phases,
        "counts": counts,
        "injected": run.injected,
        "info": run.info,
        "producer_exit_codes": run.load.exit_codes,
        "seconds": round(time.time() - started, 1),
        "error": error,
    }
    if any(code != 0 for code in run.load.exit_codes):
        report["producer_logs"] = run.load.log_tail()
    report["checks"] = checks(report)
    report["passed"] = all(report["checks"].values())
    run.load.cleanup()
    return report


def checks(report: dict) -> dict[str, bool]:
    c = report["counts"]
    out = {
        "ran without error": report["error"] is None,
        "load delivered": c["delivered"] > 0,
        "producers exited cleanly (no failed delivery)": all(code == 0 for code in report["producer_exit_codes"]),
        "zero missing": c["missing"] == 0,
        "zero duplicate archive rows": c["duplicate_archive_rows"] == 0,
        "no alert lost by the consumer": c["alerts_missing_from_table"] == 0,
        "no duplicated alert": c["duplicate_alerts"] == 0,
        "recovered within the bound": bool(report["phases"]) and all(p["ok"] for p in report["phases"]),
    }
    if report.get("needs_alerts"):  # a consumer fault with no alert through the consumer would prove nothing
        out["alerts flowed through the consumer"] = c["alerts_stored"] > 0
        out["every alert the scenario provoked stored"] = (
            c.get("alerts_expected", 0) > 0 and c["alerts_expected_stored"] == c["alerts_expected"])
    if "dlq_records" in c:
        accepted = set(report["injected"].get("accepted", []))
        refused = set(report["injected"].get("refused", {}))
        out["every bad record dead-lettered"] = accepted <= set(c["dlq_keys"])
        out["no bad record archived"] = c["bad_archived"] == 0
        out["only over-limit records refused by Kafka"] = refused == set(report["injected"].get("over_limit", []))
    return out


@contextmanager
def _environ(values: dict[str, str]):
    """os.environ with `values` set while the block runs (child processes copy it when they start)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001
            pass
        time.sleep(1)
    return False
