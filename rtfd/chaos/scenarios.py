"""The chaos scenarios: what each one breaks, how it heals, and the recovery bound it promises.

Each scenario's `inject_and_recover(run)` runs while the load flows; it registers an undo for every fault
before injecting it (`run.undo`), so the stack is whole again even when a step fails. Crashed components are
brought back by the stack's supervisor (the platform's own recovery) or, if none runs, by the scenario.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from rtfd import topology
from rtfd.chaos import faults, probes
from rtfd.chaos.runner import Run
from rtfd.stack import StackError, kafka
from rtfd.stack.flink import JOB_NAME

ALERT_TRIGGER_CARDS = 3  # cards the alert-consumer scenario runs a card-testing pattern on
SUPERVISOR_GRACE_S = 30.0  # the supervisor checks every 2 s; past this we restart a crashed component ourselves


def _leaders(run: Run, topic: str = topology.TRANSACTIONS) -> dict[str, int]:
    """Partitions of `topic` led per broker component name (kafka-1.. ; node id n is kafka-(n-1))."""
    meta = kafka.admin(run.settings).list_topics(topic, timeout=10).topics[topic]
    counts = {f"kafka-{i}": 0 for i in range(1, run.settings.broker_count + 1)}
    for p in meta.partitions.values():
        name = f"kafka-{p.leader - 1}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _crash_and_recover(run: Run, name: str, bound_s: float, label: str, extra: dict | None = None,
                       **info) -> dict:
    proc = run.stack.component(name)
    run.undo.append(lambda: faults.start_if_down(run.stack, proc))
    lag = run.archive_lag()
    started = time.time()
    pid = faults.crash(proc)
    run.say(f"  kill -9 {name} (pid {pid})")
    restarted_by = faults.ensure_restarted(run.stack, proc, pid, SUPERVISOR_GRACE_S)
    run.say(f"  {name} restarted by the {restarted_by}")
    return run.wait_healthy(label, started, started, bound_s, extra=extra, lag_before_s=lag,
                            restarted_by=restarted_by, **info)


@dataclass(frozen=True)
class BrokerCrash:
    name: str = "broker"
    summary: str = ("kill -9 one broker of three, restart it; then kill -9 the broker leading the most "
                    "`transactions` partitions, restart it")
    bound_s: float = 180.0  # a broker JVM restart plus log recovery took 60-120 s on the loaded 2-core box
    needs_flink: bool = False
    needs_alerts: bool = False

    def inject_and_recover(self, run: Run) -> None:
        if run.settings.broker_count < 3:
            raise StackError("the broker scenario needs three brokers (`rtfd up --brokers 3`)")
        leaders = _leaders(run)
        follower = min(sorted(leaders), key=lambda b: leaders[b])
        _crash_and_recover(run, follower, self.bound_s, f"kill -9 {follower}", leads=leaders[follower])
        run.keep_load(run.cfg.duration / 4)
        leaders = _leaders(run)
        # the broker leading most partitions now; on a tie, another broker than the first victim
        leader = max(sorted(leaders), key=lambda b: (leaders[b], b != follower))
        _crash_and_recover(run, leader, self.bound_s, f"kill -9 {leader} (partition leader)",
                           leads=leaders[leader])


@dataclass(frozen=True)
class TaskManagerCrash:
    name: str = "taskmanager"
    summary: str = "kill -9 the Flink TaskManager; the job restarts from its last checkpoint"
    bound_s: float = 180.0
    needs_flink: bool = True
    needs_alerts: bool = False

    def inject_and_recover(self, run: Run) -> None:
        cluster = run.stack.flink
        job = cluster.find_job(JOB_NAME, live_only=True)
        before = cluster.job_status(job["jid"])
        run.info["checkpoint_before"] = (before.get("checkpoints") or {}).get("last_id")
        failed_over = probes.flink_failed_over(run.stack, probes.taskmanager_ids(run.stack), before["restarts"] or 0)
        _crash_and_recover(run, "flink-taskmanager", self.bound_s, "kill -9 flink-taskmanager",
                           extra={"failover": failed_over})
        after = cluster.job_status(cluster.find_job(JOB_NAME, live_only=True)["jid"])
        run.info["job_restarts"] = after.get("restarts")
        run.info["restored_from"] = after.get("restored_from")


@dataclass(frozen=True)
class PostgresRestart:
    name: str = "postgres"
    summary: str = "restart PostgreSQL mid-stream (fast shutdown, start again)"
    # the archive sink's failure takes the TaskManager down with it (docs/reliability.md): TaskManager's bound
    bound_s: float = 180.0
    needs_flink: bool = False
    needs_alerts: bool = False

    def inject_and_recover(self, run: Run) -> None:
        if not run.settings.managed_postgres:
            raise StackError("the postgres scenario restarts the private cluster; RTFD_PG_DSN points elsewhere")
        proc = run.stack.pg.process()
        run.undo.append(lambda: faults.start_if_down(run.stack, proc))
        lag = run.archive_lag()
        with faults.held(run.stack, proc.name, 180):
            started = time.time()
            proc.stop()
            run.say("  postgres stopped")
            proc.start()
            accepts = probes.postgres_accepts(run.settings)
            proc.wait_ready(lambda: accepts().ok, 60, "accepting connections")
            ended = time.time()
            run.say(f"  postgres started again after {ended - started:.1f}s")
        run.wait_healthy("restart postgres", started, ended, self.bound_s, lag_before_s=lag)


@dataclass(frozen=True)
class RegistryOutage:
    name: str = "registry"
    summary: str = "stop the schema registry for 30 s (10 s in the short version), then start it"
    bound_s: float = 60.0
    needs_flink: bool = False
    needs_alerts: bool = False

    def inject_and_recover(self, run: Run) -> None:
        down_s = 10.0 if run.cfg.short else 30.0
        proc = run.stack.registry()
        run.undo.append(lambda: faults.start_if_down(run.stack, proc))
        lag = run.archive_lag()
        with faults.held(run.stack, proc.name, down_s + 120):
            started = time.time()
            proc.stop()
            run.say(f"  registry stopped for {down_s:.0f}s")
            run.keep_load(down_s - (time.time() - started))
            proc.start()
            ended = time.time()
        run.wait_healthy(f"registry down {down_s:.0f}s", started, ended, self.bound_s, lag_before_s=lag)


@dataclass(frozen=True)
class BadInput:
    name: str = "bad-input"
    summary: str = ("inject garbage bytes, truncated and null values, unknown schema ids, a wrong schema, a "
                    "contract breach, ~900 KB oversized records and 2 MB over-limit records mid-stream")
    bound_s: float = 60.0
    needs_flink: bool = True
    needs_alerts: bool = False

    def inject_and_recover(self, run: Run) -> None:
        each = 2 if run.cfg.short else 10
        prefix = f"chaos-bad-{uuid.uuid4().hex[:8]}"
        run.bad_prefix = prefix
        sample = {  # a valid v2 transaction to break (only its shape matters)
            "transaction_id": f"{prefix}-base", "event_time": int(time.time() * 1000), "bank_id": "chaos-bad",
            "customer_id": "c-1", "card_token": "tok-chaos", "merchant_id": "m-1", "terminal_id": "t-1",
            "mcc": "5411", "amount_minor": 1000, "currency": "EUR", "channel": "POS", "country": "DE",
            "lat": 52.5, "lon": 13.4, "device_id": None,
        }
        records = faults.bad_records(run.settings, prefix, each, sample)
        lag = run.archive_lag()
        started = time.time()
        injected = faults.inject(run.settings, records, over_limit=each, prefix=prefix)
        ended = time.time()
        run.injected = {
            "records": len(records) + each,
            "accepted": sorted(injected.accepted),
            "refused": injected.refused,
            "over_limit": [f"{prefix}-over-limit-{i}" for i in range(each)],
        }
        run.say(f"  injected {len(records)} bad records ({len(injected.accepted)} accepted by Kafka), "
                f"{len(injected.refused)} refused")
        run.wait_healthy("bad records", started, ended, self.bound_s, lag_before_s=lag)


@dataclass(frozen=True)
class AlertConsumerCrash:
    name: str = "alert-consumer"
    summary: str = ("take every PostgreSQL connection slot, kill -9 the alert consumer (it restarts into a full "
                    "server), give the slots back after 20 s (8 s in the short version)")
    bound_s: float = 60.0
    needs_flink: bool = True
    needs_alerts: bool = True

    def inject_and_recover(self, run: Run) -> None:
        if not run.settings.managed_postgres:
            raise StackError("the alert-consumer scenario fills the private cluster's connection slots; "
                             "RTFD_PG_DSN points elsewhere")
        hog_s = 8.0 if run.cfg.short else 20.0
        hog = faults.ConnectionHog(run.settings.postgres_dsn)
        run.undo.append(hog.release)
        proc = run.stack.alert_consumer()
        run.undo.append(lambda: faults.start_if_down(run.stack, proc))
        lag = run.archive_lag()
        started = time.time()
        taken = hog.fill()
        run.say(f"  holding {taken} PostgreSQL connections (then: {hog.refused})")
        pid = faults.crash(proc)
        run.say(f"  kill -9 alert-consumer (pid {pid})")
        restarted_by = faults.ensure_restarted(run.stack, proc, pid, SUPERVISOR_GRACE_S)
        # alerts raised while the consumer is down and the server full: only the restarted consumer can store them
        prefix = f"chaos-alert-{uuid.uuid4().hex[:8]}"
        triggers, must_alert = faults.card_testing_records(run.settings, run.load.banks[0], prefix,
                                                           ALERT_TRIGGER_CARDS)
        run.sent |= faults.send_transactions(run.settings, triggers)
        run.alert_expected |= must_alert
        run.say(f"  sent {len(triggers)} card-testing transactions ({ALERT_TRIGGER_CARDS} cards) that must alert")
        run.keep_load(hog_s - (time.time() - started))
        hog.release()
        ended = time.time()
        run.say(f"  connections released after {ended - started:.0f}s; alert-consumer restarted by the "
                f"{restarted_by}")
        offsets_at_heal = probes.end_offsets(run.settings, topology.FRAUD_ALERTS)
        run.wait_healthy(
            "connections exhausted + kill -9 alert-consumer", started, ended, self.bound_s,
            extra={"alert consumer": probes.alert_consumer_caught_up(run.settings, lambda: offsets_at_heal)},
            lag_before_s=lag, connections_taken=taken, restarted_by=restarted_by,
        )


SCENARIOS = {s.name: s for s in (BrokerCrash(), TaskManagerCrash(), PostgresRestart(), RegistryOutage(),
                                 BadInput(), AlertConsumerCrash())}
