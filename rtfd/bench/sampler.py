"""Once a second: topic growth, archive rows, consumer lag, and CPU/memory of every stack component."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psutil
import psycopg
from confluent_kafka import Consumer, TopicPartition

from rtfd import topology
from rtfd.bench import StoppableThread
from rtfd.config import Settings
from rtfd.stack import NativeStack, kafka
from rtfd.stack.status import consumer_lag

FLINK_GROUP = "rtfd-flink"
TOPICS = (topology.TRANSACTIONS, topology.FRAUD_ALERTS, topology.TRANSACTIONS_DLQ)
LOAD_ROW = "(bench producers)"
log = logging.getLogger(__name__)


class ArchiveCounter:
    """Archived rows of the bench's banks, counted incrementally.

    Counting them all every second (`count(*) WHERE bank_id = ANY(...)`) made PostgreSQL scan every row of the
    run, with heap fetches, on each tick: ~1 s of a parallel scan at 1 million rows, on the database being
    measured. Here each reading scans only the rows stamped in the last SETTLE_S seconds plus those since the
    previous reading (`processed_at`, indexed). processed_at is the inserting transaction's start (`now()`),
    so a row may become visible after later-stamped ones; a row counts as settled once its stamp is SETTLE_S
    older than the database's clock, an insert never takes that long, and newer rows are recounted at every
    reading until they settle."""

    SETTLE_S = 10

    def __init__(self, banks: list[str]):
        self.banks = banks
        self.settled = 0  # rows stamped up to `cut`, never counted again
        self.cut = None  # None: nothing counted yet, the first reading counts every row of the banks

    def read(self, conn: psycopg.Connection) -> int:
        cut = conn.execute("SELECT now() - make_interval(secs => %s)", (self.SETTLE_S,)).fetchone()[0]
        since = "" if self.cut is None else "AND processed_at > %(since)s"
        # never a prepared statement: a generic plan would not know how few rows the stamps select
        settling, recent = conn.execute(
            f"""
            SELECT count(*) FILTER (WHERE processed_at <= %(cut)s), count(*) FILTER (WHERE processed_at > %(cut)s)
            FROM transactions WHERE bank_id = ANY(%(banks)s) {since}
            """,  # noqa: S608 - `since` is one of two fixed strings
            {"banks": self.banks, "cut": cut, "since": self.cut},
            prepare=False,
        ).fetchone()
        self.settled += settling
        self.cut = cut
        return self.settled + recent


class Sampler(StoppableThread):
    def __init__(self, settings: Settings, banks: list[str]):
        super().__init__()
        self.settings = settings
        self.banks = banks
        self.archive = ArchiveCounter(banks)
        self.samples: list[dict] = []
        self.components = {p.name: p for p in NativeStack(settings).all_known()}
        self.load: list[psutil.Process] = []  # the bench's own producers (`watch_load`)
        self._procs: dict[str, psutil.Process] = {}
        self.errors: list[str] = []  # readings that failed (timed out under load), with their time
        self._first: dict | None = None  # the first and the latest successful reading
        self._last: dict | None = None

    def topic_total(self, probe: Consumer, topic: str) -> int:
        meta = probe.list_topics(topic, timeout=5).topics[topic]
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in meta.partitions)

    def watch_load(self, pids: list[int]) -> None:
        """Report the load generators too, as one row: on one machine they share its cores with the stack."""
        for pid in pids:
            try:
                self.load.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue

    def usage(self) -> dict[str, dict]:
        """CPU (% of one core) and RSS (MB) per component, children included (Flink's Python workers), and of
        the bench producers (LOAD_ROW)."""
        roots = {name: managed.process() for name, managed in self.components.items()}
        out = {}
        for name, proc in roots.items():
            if proc is None:
                continue
            family = own_family(proc, {p.pid for other, p in roots.items() if p is not None and other != name})
            out[name] = self.family_usage(name, family)
        if self.load:
            out[LOAD_ROW] = self.family_usage(LOAD_ROW, self.load)
        return out

    def family_usage(self, name: str, family: list[psutil.Process]) -> dict:
        cpu = rss = 0.0
        for p in family:
            try:
                cached = self._procs.setdefault(f"{name}:{p.pid}", p)
                cpu += cached.cpu_percent(None)
                rss += cached.memory_info().rss
            except psutil.Error:
                continue
        return {"cpu_pct": round(cpu, 1), "rss_mb": round(rss / 2**20)}

    def run(self) -> None:
        # one admin client, one probe and one committed-offset handle per group for the whole run, not new
        # librdkafka clients every second (the group handles carry the group's id and are never subscribed)
        probe = Consumer(self.settings.kafka_client_conf(principal="admin", **{"group.id": "rtfd-bench-probe"}))
        groups: dict[str, Consumer] = {}
        try:
            groups[FLINK_GROUP] = kafka.group_handle(self.settings, FLINK_GROUP)
            admin = kafka.admin(self.settings)
            with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn:
                while not self.stopping.is_set():
                    tick = time.monotonic()
                    self.record(lambda: self.read(probe, admin, groups, conn))
                    self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - tick)))
        finally:
            for handle in (probe, *groups.values()):
                handle.close()

    def record(self, read: Callable[[], dict]) -> None:
        """Take one reading and append its timeline point. A reading that fails (a broker or the database
        too slow under full load) is noted in `errors` and skipped; it must not end the timeline, and the
        next point's rates span the gap."""
        tick = time.monotonic()
        try:
            now = read()
        except Exception as exc:  # noqa: BLE001 - whatever the cause, the next tick tries again
            self.errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            log.warning("bench sampler: reading failed (%s); the next tick tries again", exc)
            return
        self._first = self._first or now
        if self._last is not None:
            self.samples.append(sample(self._first, self._last, now, time.monotonic() - tick, self.usage()))
        else:
            self.usage()  # primes psutil's CPU counters
        self._last = now

    def read(self, probe: Consumer, admin, groups: dict[str, Consumer], conn: psycopg.Connection) -> dict:
        """Topic end offsets, archived bench rows and the Flink job's lag on `transactions`, now."""
        totals = {t: self.topic_total(probe, t) for t in TOPICS}
        archived = self.archive.read(conn)
        lag = sum(
            r["lag"]
            for r in consumer_lag(self.settings, [FLINK_GROUP], admin, probe, group_handles=groups)
            if r["topic"] == topology.TRANSACTIONS
        )
        return {"t_ms": int(time.time() * 1000), "archived": archived, "lag": lag, **totals}

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


def sample(first: dict, last: dict, now: dict, tick_s: float, components: dict) -> dict:
    """One timeline point: the rates since the previous reading and the totals since the first one.

    Readings are about a second apart on a quiet machine and further apart under full load, so the rates
    are divided by the real time between readings, and the totals let a summary take its rates over any
    span (`rtfd.bench.summarize`) instead of averaging the per-tick rates."""
    dt = (now["t_ms"] - last["t_ms"]) / 1000

    def since(reading: dict, key: str) -> int:
        return now[key] - reading[key]

    return {
        "t_ms": now["t_ms"],
        "produced_per_s": since(last, topology.TRANSACTIONS) / dt,
        "archived_per_s": since(last, "archived") / dt,
        "alerts_per_s": since(last, topology.FRAUD_ALERTS) / dt,
        "dlq_per_s": since(last, topology.TRANSACTIONS_DLQ) / dt,
        "lag": now["lag"],
        # totals since the sampler's first reading (all banks for the topics, the bench's banks for the archive)
        "produced_total": since(first, topology.TRANSACTIONS),
        "archived_total": now["archived"],
        "alerts_total": since(first, topology.FRAUD_ALERTS),
        "dlq_total": since(first, topology.TRANSACTIONS_DLQ),
        "backlog": since(first, topology.TRANSACTIONS) - now["archived"],
        "tick_s": round(tick_s, 3),
        "components": components,
    }


def own_family(proc: psutil.Process, other_components: set[int]) -> list[psutil.Process]:
    """`proc` and its descendants, except other components and theirs. The supervisor is the parent of every
    component it restarted (a TaskManager after a crash): counted as its family, that TaskManager's CPU and
    memory appeared twice in a report, once under its own name and once under the supervisor's."""
    family, stack = [proc], [proc]
    while stack:
        try:
            children = stack.pop().children()
        except psutil.Error:
            continue
        for child in children:
            if child.pid not in other_components:
                family.append(child)
                stack.append(child)
    return family
