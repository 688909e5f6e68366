"""`rtfd status`: each component (up/down, pid, port), topics with partitions and in-sync replicas,
consumer-group lag, archive row counts and the Flink cluster with its job. Every probe is best effort:
a down part is reported, not fatal."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, TopicPartition

from rtfd.stack import kafka, postgres

if TYPE_CHECKING:
    from rtfd.stack import NativeStack


def consumer_lag(settings, groups: list[str] | None = None, client=None, probe: Consumer | None = None,
                 group_handles: Mapping[str, Consumer] | None = None) -> list[dict]:
    """Committed offset vs. high watermark, summed per group and topic: for `groups`, or every group.
    A caller that asks repeatedly (the benchmark's sampler) passes its own admin client and probe consumer,
    and in `group_handles` a long-lived `kafka.group_handle` per group (left open; a group without one gets a
    handle for this call). Committed offsets come from `kafka.group_committed` (a consumer handle per group:
    the admin OffsetFetch crashes librdkafka 2.16 during a broker failover)."""
    if groups is None:
        client = client or kafka.admin(settings)
        groups = sorted(g.group_id for g in client.list_consumer_groups(request_timeout=5).result().valid)
    handles = group_handles or {}
    own_probe = probe is None
    if own_probe:
        probe = Consumer(settings.kafka_client_conf(principal="admin", **{"group.id": "rtfd-status-probe"}))
    rows = []
    try:
        for group in groups:
            per_topic: dict[str, int] = {}
            committed = kafka.group_committed(settings, group, consumer=handles.get(group))
            for (topic, partition), offset in sorted(committed.items()):
                _low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                per_topic[topic] = per_topic.get(topic, 0) + max(0, high - offset)
            for topic, lag in sorted(per_topic.items()):
                rows.append({"group": group, "topic": topic, "lag": lag})
    finally:
        if own_probe:
            probe.close()
    return rows


def add_message_counts(settings, topics: list[dict]) -> None:
    """Messages currently in each topic (high minus low watermark, summed over partitions)."""
    probe = Consumer(settings.kafka_client_conf(principal="admin", **{"group.id": "rtfd-status-probe"}))
    try:
        for row in topics:
            if row["exists"]:
                marks = [probe.get_watermark_offsets(TopicPartition(row["topic"], p), timeout=5)
                         for p in range(row["partitions"])]
                row["messages"] = sum(high - low for low, high in marks)
    finally:
        probe.close()


def collect(stack: NativeStack) -> dict:
    settings = stack.settings
    components = []
    for proc in stack.all_known():
        components.append(
            {"name": proc.name, "state": "up" if proc.is_running() else "down", "pid": proc.pid, "port": proc.port}
        )
    report: dict = {"state_dir": str(stack.state), "components": components}
    try:
        report["topics"] = kafka.describe_topics(settings)
        add_message_counts(settings, report["topics"])
        report["consumer_groups"] = consumer_lag(settings)
    except Exception as exc:  # noqa: BLE001
        report["kafka_error"] = f"Kafka unreachable at {settings.kafka_bootstrap}: {exc}"
    try:
        report["rows"] = postgres.row_counts(settings.postgres_dsn, ("transactions", "alerts", "fraud_labels"))
        from services.alerts.store import webhook_status

        report["webhook"] = webhook_status(settings.postgres_dsn)
    except Exception as exc:  # noqa: BLE001
        report["postgres_error"] = f"PostgreSQL unreachable: {exc.__class__.__name__}: {exc}"
    if settings.stack_info().get("flink", False):
        report["flink"] = stack.flink.describe()
    return report


def _ago(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return "-"
    clock = time.strftime("%H:%M:%S", time.localtime(epoch_ms / 1000))
    return f"{clock} ({_duration(time.time() * 1000 - epoch_ms)} ago)"


def _duration(ms: float | None) -> str:
    if ms is None or ms < 0:
        return "-"
    s = int(ms // 1000)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render_flink(flink: dict) -> list[str]:
    lines = [f"flink: web UI {flink['url']}"]
    if flink.get("cluster") != "up":
        lines.append(f"  cluster: down ({flink.get('error', 'not reachable')})")
        return lines
    lines.append(
        f"  cluster: up (Flink {flink.get('version')}), taskmanagers {flink.get('taskmanagers')}, "
        f"slots {flink.get('slots_available')}/{flink.get('slots_total')} free"
    )
    job = flink.get("job")
    if job is None:
        lines.append(f"  job: {flink.get('job_error', 'not submitted')}")
        return lines
    lines.append(
        f"  job: {job['name']} {job['state']} (id {job['id']}), up {_duration(job.get('duration_ms'))}, "
        f"restarts {job.get('restarts') if job.get('restarts') is not None else '?'}"
    )
    for v in job["vertices"]:
        lines.append(f"    {v['status']:<12} x{v['parallelism']:<3} {v['name'][:90]}")
    ckpt = job.get("checkpoints")
    if ckpt:
        last = "none"
        if ckpt["last_id"] is not None:
            last = f"#{ckpt['last_id']} at {_ago(ckpt['last_time'])}, {ckpt['last_size']} bytes"
        lines.append(f"  checkpoints: last {last}; completed {ckpt['completed']}, failed {ckpt['failed']}")
    return lines


def render(report: dict) -> str:
    lines = [f"state folder: {report['state_dir']}", "", f"{'COMPONENT':<22}{'STATE':<7}{'PID':<9}PORT"]
    for c in report["components"]:
        lines.append(f"{c['name']:<22}{c['state']:<7}{c['pid'] or '-'!s:<9}{c['port'] or '-'}")
    lines.append("")
    if "kafka_error" in report:
        lines.append(report["kafka_error"])
    else:
        lines.append(f"{'TOPIC':<20}{'PARTS':<7}{'RF':<4}{'ISR(min)':<10}{'UNDER-REPL':<12}{'MESSAGES':<11}CONFIG")
        for t in report["topics"]:
            if not t["exists"]:
                lines.append(f"{t['topic']:<20}missing")
                continue
            cfg = f"min.insync.replicas={t.get('min_insync_replicas', '?')} cleanup={t.get('cleanup_policy', '?')}"
            lines.append(
                f"{t['topic']:<20}{t['partitions']:<7}{t['replication']:<4}{t['min_isr']:<10}"
                f"{t['under_replicated']:<12}{t.get('messages', '?')!s:<11}{cfg}"
            )
        lines.append("")
        if report["consumer_groups"]:
            lines.append(f"{'CONSUMER GROUP':<30}{'TOPIC':<20}LAG")
            for g in report["consumer_groups"]:
                lines.append(f"{g['group']:<30}{g['topic']:<20}{g['lag']}")
        else:
            lines.append("consumer groups: none yet")
    lines.append("")
    if "postgres_error" in report:
        lines.append(report["postgres_error"])
    else:
        for table, n in report["rows"].items():
            lines.append(f"rows in {table}: {'(table missing)' if n is None else n}")
        hook = report.get("webhook") or {}
        if hook.get("available") and any(hook.get(k) for k in ("delivered", "pending", "retrying", "given_up")):
            lines.append(f"alert webhook: {hook['delivered']} delivered, {hook['pending']} pending, "
                         f"{hook['retrying']} retrying, {hook['given_up']} given up"
                         + (f"; last error: {hook['last_error']['error']}" if hook.get("last_error") else ""))
    if "flink" in report:
        lines.append("")
        lines += render_flink(report["flink"])
    return "\n".join(lines)
