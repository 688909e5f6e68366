"""Health probes of the running stack, each answering "healthy now?" with a reason when not.

A chaos scenario is recovered when every probe it names passes at the same moment. A probe never raises:
an unreachable server is an unhealthy answer, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from rtfd import topology
from rtfd.config import Settings
from rtfd.stack import NativeStack, kafka
from rtfd.stack.flink import JOB_NAME
from rtfd.stack.process import port_open
from services.alerts import GROUP_ID as ALERT_CONSUMER_GROUP

_quiet = logging.getLogger("rtfd.chaos.kafka")


@dataclass
class Verdict:
    ok: bool
    why: str = ""


Probe = Callable[[], Verdict]


def components_running(stack: NativeStack, names: set[str]) -> Probe:
    """Each named component's process runs, and listens when it has a port (a restarted JVM takes a while)."""

    def probe() -> Verdict:
        procs = [p for p in stack.components() if p.name in names]
        down = [p.name for p in procs if not p.is_running()]
        deaf = [p.name for p in procs if p.port and p.name not in down and not port_open(p.port)]
        why = "; ".join(part for part in (f"down: {', '.join(down)}" if down else "",
                                          f"not listening yet: {', '.join(deaf)}" if deaf else "") if part)
        return Verdict(not why, why)

    return probe


_ADMINS: dict[str, AdminClient] = {}


def admin(settings: Settings) -> AdminClient:
    """One admin client per cluster for all probes, logging through Python (quiet) instead of stderr: a
    probe polled every half second must not open a client each time, nor print a line per refused connect."""
    key = settings.kafka_bootstrap
    if key not in _ADMINS:
        _ADMINS[key] = AdminClient(settings.kafka_client_conf(principal="admin", **{"socket.timeout.ms": 5000,
                                                                                    "logger": _quiet}))
    return _ADMINS[key]


def kafka_fully_replicated(settings: Settings) -> Probe:
    """Every broker registered and every partition of the platform's topics has its full in-sync replica set."""
    wanted = settings.broker_count

    def probe() -> Verdict:
        try:
            meta = admin(settings).list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001
            return Verdict(False, f"kafka unreachable: {exc}")
        if len(meta.brokers) < wanted:
            return Verdict(False, f"{len(meta.brokers)}/{wanted} brokers registered")
        for spec in topology.TOPICS:
            topic = meta.topics.get(spec.name)
            if topic is None or topic.error is not None:
                return Verdict(False, f"topic {spec.name} not described")
            for p in topic.partitions.values():
                if p.leader < 0 or len(p.isrs) < len(p.replicas):
                    return Verdict(False, f"{spec.name}[{p.id}] leader {p.leader}, isr {p.isrs} of {p.replicas}")
        return Verdict(True)

    return probe


def flink_job_running(stack: NativeStack) -> Probe:
    """The fraud job and every one of its tasks RUNNING on at least one TaskManager."""

    def probe() -> Verdict:
        try:
            if stack.flink.taskmanagers() < 1:
                return Verdict(False, "no TaskManager registered")
            job = stack.flink.find_job(JOB_NAME, live_only=True)
            if job is None:
                return Verdict(False, f"no live {JOB_NAME} job")
            detail = stack.flink._get(f"/jobs/{job['jid']}")
        except (httpx.HTTPError, ValueError) as exc:
            return Verdict(False, f"Flink REST unreachable: {exc.__class__.__name__}")
        waiting = [v["name"][:40] for v in detail.get("vertices", []) if v.get("status") != "RUNNING"]
        if detail.get("state") != "RUNNING" or waiting:
            return Verdict(False, f"job {detail.get('state')}, tasks not running: {len(waiting)}")
        return Verdict(True)

    return probe


def taskmanager_ids(stack: NativeStack) -> set[str]:
    return {tm["id"] for tm in stack.flink._get("/taskmanagers").get("taskmanagers", [])}


def job_restarts(stack: NativeStack) -> int:
    job = stack.flink.find_job(JOB_NAME, live_only=True)
    return (stack.flink.job_status(job["jid"]).get("restarts") or 0) if job else 0


def flink_failed_over(stack: NativeStack, old_taskmanagers: set[str], restarts_before: int) -> Probe:
    """The JobManager noticed the crash: the dead TaskManager is gone from the cluster and the job restarted
    (until then the REST API still shows the old tasks RUNNING)."""

    def probe() -> Verdict:
        try:
            stale = old_taskmanagers & taskmanager_ids(stack)
            restarts = job_restarts(stack)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return Verdict(False, f"Flink REST unreachable: {exc.__class__.__name__}")
        if stale:
            return Verdict(False, "the crashed TaskManager is still registered")
        if restarts <= restarts_before:
            return Verdict(False, "the job has not restarted yet")
        return Verdict(True)

    return probe


def postgres_accepts(settings: Settings) -> Probe:
    def probe() -> Verdict:
        try:
            with psycopg.connect(settings.postgres_dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return Verdict(True)
        except psycopg.Error as exc:
            return Verdict(False, f"postgres: {str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}")

    return probe


def registry_answers(settings: Settings) -> Probe:
    def probe() -> Verdict:
        try:
            ok = httpx.get(f"{settings.registry}/subjects", timeout=3).is_success
            return Verdict(ok, "" if ok else "registry answered an error")
        except httpx.HTTPError as exc:
            return Verdict(False, f"registry unreachable: {exc.__class__.__name__}")

    return probe


def archive_flowing(settings: Settings, banks: list[str], since_ms: Callable[[], int]) -> Probe:
    """The pipeline moves again: a transaction the load sent after `since_ms()` (epoch ms) is archived."""

    def probe() -> Verdict:
        try:
            with psycopg.connect(settings.postgres_dsn, connect_timeout=3) as conn:
                newest = conn.execute(
                    "SELECT (extract(epoch FROM max(event_time)) * 1000)::bigint FROM transactions "
                    "WHERE bank_id = ANY(%s)", (banks,)
                ).fetchone()[0]
        except psycopg.Error as exc:
            return Verdict(False, f"archive not readable: {type(exc).__name__}")
        if newest is None or newest < since_ms():
            return Verdict(False, "no transaction sent after the fault is archived yet")
        return Verdict(True)

    return probe


def archive_written(settings: Settings, banks: list[str], since_ms: Callable[[], int]) -> Probe:
    """The job writes the archive again: a row of the run's banks was first inserted after `since_ms()`
    (processed_at is set on the first insert only, so a replayed row does not count)."""

    def probe() -> Verdict:
        try:
            with psycopg.connect(settings.postgres_dsn, connect_timeout=3) as conn:
                found = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM transactions WHERE bank_id = ANY(%s) "
                    "AND processed_at >= to_timestamp(%s / 1000.0))", (banks, since_ms())
                ).fetchone()[0]
        except psycopg.Error as exc:
            return Verdict(False, f"archive not readable: {type(exc).__name__}")
        return Verdict(found, "" if found else "no archive row written since the fault ended")

    return probe


def archive_lag_s(settings: Settings, banks: list[str]) -> float | None:
    """How far the archive trails the load: now minus the newest archived event_time of the run's banks."""
    try:
        with psycopg.connect(settings.postgres_dsn, connect_timeout=3) as conn:
            lag = conn.execute(
                "SELECT extract(epoch FROM now() - max(event_time)) FROM transactions WHERE bank_id = ANY(%s)",
                (banks,),
            ).fetchone()[0]
        return None if lag is None else round(float(lag), 1)
    except psycopg.Error:
        return None


def flink_backlog(settings: Settings) -> Probe:
    """The fraud job's consumer group has (almost) nothing left to read on `transactions`: a run that starts
    on top of the previous run's backlog would measure that backlog, not its own fault. Offsets are committed
    at checkpoints (10 s), so up to ~10 s of live traffic counts as drained."""
    from rtfd.bench.sampler import FLINK_GROUP

    def probe() -> Verdict:
        try:
            committed, end = group_offsets(settings, FLINK_GROUP, topology.TRANSACTIONS)
        except Exception as exc:  # noqa: BLE001
            return Verdict(False, f"lag unknown: {exc}")
        # as `rtfd status` counts it: a partition the group never committed on adds nothing
        lag = sum(max(0, end[p] - offset) for p, offset in committed.items() if offset >= 0 and p in end)
        return Verdict(lag <= 5000, f"the Flink job still has {lag} transactions to read" if lag > 5000 else "")

    return probe


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    probe = Consumer(settings.kafka_client_conf(principal="admin", **{"group.id": "rtfd-chaos-probe",
                                                                      "logger": _quiet}))
    try:
        meta = probe.list_topics(topic, timeout=10).topics[topic]
        return {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        probe.close()


def group_offsets(settings: Settings, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """`group`'s committed offset per partition of `topic` (a partition it never committed on is left out) and
    the end offset of every partition of `topic`.

    Committed offsets come from `kafka.group_committed`, through a consumer handle carrying the group's id
    (never subscribed, so it does not join the group or commit anything), not through
    `AdminClient.list_consumer_group_offsets`: librdkafka (2.16.0, the one in confluent-kafka 2.16.1) answers a
    coordinator error on that admin request (NOT_COORDINATOR, e.g. when a restarted broker takes its
    `__consumer_offsets` partitions back) by re-querying the coordinator of the handle's consumer group, which an
    admin handle does not have: `rd_kafka_handle_OffsetFetch` -> `rd_kafka_cgrp_op(rk->rk_cgrp = NULL)`, a
    segfault in the `rdk:main` thread. That killed the chaos test process in CI without a traceback
    (librdkafka's threads block every signal, so faulthandler never runs; docs/reliability.md). A consumer
    handle has its group, and the same error only re-queries its coordinator. The handle is this call's own
    (quiet while brokers come and go) and also reads the end offsets."""
    probe = kafka.group_handle(settings, group, logger=_quiet)
    try:
        partitions = [TopicPartition(topic, p) for p in probe.list_topics(topic, timeout=5).topics[topic].partitions]
        committed = {p: o for (_t, p), o in kafka.group_committed(settings, group, [topic], consumer=probe).items()}
        end = {tp.partition: probe.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions}
        return committed, end
    finally:
        probe.close()


def alert_consumer_caught_up(settings: Settings, target: Callable[[], dict[int, int]]) -> Probe:
    """The alert consumer committed, on every partition of fraud-alerts, at least the offsets of `target()`
    (the topic's end when the fault ended): it consumes and stores again."""

    def probe() -> Verdict:
        try:
            wanted = target()
            committed, _end = group_offsets(settings, ALERT_CONSUMER_GROUP, topology.FRAUD_ALERTS)
        except Exception as exc:  # noqa: BLE001
            return Verdict(False, f"alert consumer offsets unknown: {exc}")
        behind = {p: end - max(committed.get(p, 0), 0) for p, end in wanted.items()
                  if max(committed.get(p, 0), 0) < end}
        return Verdict(not behind, f"alert consumer behind on partitions {behind}" if behind else "")

    return probe


def all_of(probes: dict[str, Probe]) -> Probe:
    def probe() -> Verdict:
        for name, check in probes.items():
            verdict = check()
            if not verdict.ok:
                return Verdict(False, f"{name}: {verdict.why}")
        return Verdict(True)

    return probe
