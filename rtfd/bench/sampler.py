"""Once a second: topic growth, archive rows, consumer lag, and CPU/memory of every stack component."""

from __future__ import annotations

import time

import psutil
import psycopg
from confluent_kafka import Consumer, TopicPartition

from rtfd import topology
from rtfd.bench import StoppableThread
from rtfd.config import Settings
from rtfd.stack import NativeStack, kafka
from rtfd.stack.status import consumer_lag

FLINK_GROUP = "rtfd-flink"


class Sampler(StoppableThread):
    def __init__(self, settings: Settings, banks: list[str]):
        super().__init__()
        self.settings = settings
        self.banks = banks
        self.samples: list[dict] = []
        self.components = {p.name: p for p in NativeStack(settings).all_known()}
        self._procs: dict[str, psutil.Process] = {}

    def topic_total(self, probe: Consumer, topic: str) -> int:
        meta = probe.list_topics(topic, timeout=5).topics[topic]
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in meta.partitions)

    def usage(self) -> dict[str, dict]:
        """CPU (% of one core) and RSS (MB) per component, children included (Flink's Python workers)."""
        out = {}
        for name, managed in self.components.items():
            proc = managed.process()
            if proc is None:
                continue
            family = [proc, *proc.children(recursive=True)]
            cpu = rss = 0.0
            for p in family:
                try:
                    cached = self._procs.setdefault(f"{name}:{p.pid}", p)
                    cpu += cached.cpu_percent(None)
                    rss += cached.memory_info().rss
                except psutil.Error:
                    continue
            out[name] = {"cpu_pct": round(cpu, 1), "rss_mb": round(rss / 2**20)}
        return out

    def run(self) -> None:
        # one admin client, one probe and one committed-offset handle per group for the whole run, not new
        # librdkafka clients every second (the group handles carry the group's id and are never subscribed)
        probe = Consumer(self.settings.kafka_client_conf(principal="admin", **{"group.id": "rtfd-bench-probe"}))
        groups: dict[str, Consumer] = {}
        topics = (topology.TRANSACTIONS, topology.FRAUD_ALERTS, topology.TRANSACTIONS_DLQ)
        try:
            groups[FLINK_GROUP] = kafka.group_handle(self.settings, FLINK_GROUP)
            admin = kafka.admin(self.settings)
            with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn:
                last = first = None
                while not self.stopping.is_set():
                    tick = time.monotonic()
                    totals = {t: self.topic_total(probe, t) for t in topics}
                    archived = conn.execute(
                        "SELECT count(*) FROM transactions WHERE bank_id = ANY(%s)", (self.banks,)
                    ).fetchone()[0]
                    lag = sum(
                        r["lag"]
                        for r in consumer_lag(self.settings, [FLINK_GROUP], admin, probe, group_handles=groups)
                        if r["topic"] == topology.TRANSACTIONS
                    )
                    now = {"t_ms": int(time.time() * 1000), "archived": archived, **totals}
                    first = first or now
                    if last is not None:
                        dt = (now["t_ms"] - last["t_ms"]) / 1000
                        self.samples.append({
                            "t_ms": now["t_ms"],
                            "produced_per_s": (now[topology.TRANSACTIONS] - last[topology.TRANSACTIONS]) / dt,
                            "archived_per_s": (archived - last["archived"]) / dt,
                            "alerts_per_s": (now[topology.FRAUD_ALERTS] - last[topology.FRAUD_ALERTS]) / dt,
                            "dlq_per_s": (now[topology.TRANSACTIONS_DLQ] - last[topology.TRANSACTIONS_DLQ]) / dt,
                            "lag": lag,
                            "archived_total": archived,
                            # produced since the bench began (all banks) minus archived bench rows
                            "backlog": now[topology.TRANSACTIONS] - first[topology.TRANSACTIONS] - archived,
                            "components": self.usage(),
                        })
                    else:
                        self.usage()  # primes psutil's CPU counters
                    last = now
                    self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - tick)))
        finally:
            for handle in (probe, *groups.values()):
                handle.close()

    def component_summary(self, after_ms: int) -> dict:
        rows: dict[str, dict] = {}
        steady = [s for s in self.samples if s["t_ms"] >= after_ms]
        for s in steady:
            for name, use in s["components"].items():
                acc = rows.setdefault(name, {"cpu": [], "rss": []})
                acc["cpu"].append(use["cpu_pct"])
                acc["rss"].append(use["rss_mb"])
        return {
            name: {"cpu_pct_mean": round(sum(a["cpu"]) / len(a["cpu"]), 1), "rss_mb_max": max(a["rss"])}
            for name, a in rows.items()
        }
