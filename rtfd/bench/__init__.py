"""`rtfd bench`: end-to-end throughput and latency of the native pipeline, measured, never assumed.

One run: N bank producer processes drive load into `transactions`; a sampler records every second what was
produced, archived (rows in PostgreSQL) and alerted, the consumer lag of the Flink job and CPU/memory per
component; latencies come from the data itself (archive: processed_at - event_time; alert: arrival on
fraud-alerts - event_time, where event_time is the producer's clock at send). The warm-up is excluded.
Then a raw Kafka baseline of same-size records runs on the same machine, and the run ends with the
zero-loss check: every delivered transaction id is in the archive.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

import psycopg

from rtfd.config import Settings

CARD_PAYS_EVERY_S = 150
MAX_RATE_CARDS = 2000
READY_TIMEOUT_S = 300


@dataclass
class BenchConfig:
    producers: int = 2
    tps: float | None = 2000.0  # total across producers; None = as fast as the producers go
    duration: float = 60.0
    warmup: float = 15.0
    fraud_rate: float = 0.005
    customers: int | None = None  # per producer (bank): the cards the load spreads over; None: cards_per_producer
    baseline: bool = True
    out_dir: Path = Path("bench-results")
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    bank_prefix: str = "bench"  # each run's banks are its own, so its rows are told apart (`rtfd chaos` too)

    @property
    def banks(self) -> list[str]:
        return [f"{self.bank_prefix}-{self.run_id}-{i}" for i in range(self.producers)]

    @property
    def cards_per_producer(self) -> int:
        """`customers`, or enough cards that each pays about once per CARD_PAYS_EVERY_S at the asked rate
        (MAX_RATE_CARDS at max rate). A fixed small world turns a long run at a high rate into a velocity storm:
        at 2,000 tx/s, 100,000 cards pay about once a minute each and fill their 10-minute windows."""
        if self.customers:
            return self.customers
        if not self.tps:
            return MAX_RATE_CARDS
        return max(MAX_RATE_CARDS, round(self.tps / self.producers * CARD_PAYS_EVERY_S))


def start_producers(cfg: BenchConfig, ids_dir: Path, count: int | None = None) -> list[Popen]:
    """One producer process per bank for cfg.duration seconds, or until each delivered `count` records."""
    per_producer = (cfg.tps / cfg.producers) if cfg.tps else 1e9
    until = ["--count", str(count)] if count else ["--duration", str(cfg.duration)]
    procs = []
    for i, bank in enumerate(cfg.banks):
        cmd = [
            sys.executable, "-m", "rtfd.cli", "produce", "--bank", bank, "--tps", str(per_producer), *until,
            "--fraud-rate", str(cfg.fraud_rate), "--customers", str(cfg.cards_per_producer), "--seed", str(1000 + i),
            "--schema-version", "2" if i % 2 else "1", "--ids-out", str(ids_dir / f"{bank}.ids"),
            "--label-delay", "5",
        ]  # fmt: skip
        # a session of its own, as a bank's producer is: clean-ups that look for a dead process group's
        # leftovers (a crashed TaskManager's Python workers) must never count it among them
        procs.append(Popen(cmd, stdout=open(ids_dir / f"{bank}.log", "wb"), stderr=-2, start_new_session=True))
    return procs


def wait_producing(cfg: BenchConfig, ids_dir: Path, procs: list[Popen]) -> None:
    """Until every producer has built its world and starts sending (it opens its --ids-out file then): a world
    of 150,000 cards takes seconds to build, which must not count as load."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all((ids_dir / f"{bank}.ids").exists() for bank in cfg.banks):
        failed = [bank for bank, p in zip(cfg.banks, procs, strict=True) if p.poll() is not None]
        if failed:
            raise RuntimeError(f"producer(s) {failed} exited before sending; their logs are in {ids_dir}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"producers not sending after {READY_TIMEOUT_S}s; their logs are in {ids_dir}")
        time.sleep(0.2)


def delivered_ids(cfg: BenchConfig, ids_dir: Path) -> set[str]:
    """Transaction ids the producers saw delivered (acknowledged by Kafka), from their --ids-out files."""
    delivered: set[str] = set()
    for bank in cfg.banks:
        path = ids_dir / f"{bank}.ids"
        if path.exists():
            delivered |= set(path.read_text().split())
    return delivered


def wait_archived(dsn: str, banks: list[str], delivered: set[str], timeout: float) -> set[str]:
    """Poll the archive until every delivered id is in it or `timeout` seconds passed; the archived ids."""
    deadline = time.monotonic() + timeout
    while True:
        archived = archived_ids(dsn, banks)
        if delivered <= archived or time.monotonic() >= deadline:
            return archived
        time.sleep(2)


def archived_ids(dsn: str, banks: list[str]) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT transaction_id FROM transactions WHERE bank_id = ANY(%s)", (banks,))
        return {r[0] for r in rows}


def duplicate_rows(dsn: str, banks: list[str]) -> int:
    # the primary key forbids duplicates; count anyway so the report states it from the data
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) - count(DISTINCT transaction_id) FROM transactions WHERE bank_id = ANY(%s)", (banks,)
        ).fetchone()[0]


def zero_loss(dsn: str, banks: list[str], delivered: set[str], archived: set[str]) -> dict:
    """The end-of-run check: every delivered id archived, none twice."""
    return {
        "delivered": len(delivered),
        "archived": len(archived & delivered),
        "missing": len(delivered - archived),
        "duplicate_rows": duplicate_rows(dsn, banks),
        "ok": delivered <= archived,
    }


def archive_latency_ms(dsn: str, banks: list[str], after_ms: int) -> dict:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """
            SELECT count(*),
                   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM processed_at - event_time) * 1000)
            FROM transactions
            WHERE bank_id = ANY(%s) AND event_time >= to_timestamp(%s / 1000.0)
            """,
            (banks, after_ms),
        ).fetchone()
    count, pct = row
    values = [round(p, 1) for p in pct] if pct else [None, None, None]
    return {"rows": count, **dict(zip(("p50", "p95", "p99"), values, strict=True))}


LATENCY_WINDOW_S = 10
"""The latency timeline's window: transactions grouped by the window their event time falls in."""


def archive_latency_timeline(dsn: str, banks: list[str], window_s: int = LATENCY_WINDOW_S) -> dict[int, dict]:
    """Produce-to-archive-row p50/p99 (ms) per `window_s` window of event time, keyed by the window's start (epoch
    ms): the tail over the run, beside the whole run's percentiles."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT (floor(extract(epoch FROM event_time) / %(w)s) * %(w)s * 1000)::bigint AS window_ms, count(*),
                   percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
                       ORDER BY extract(epoch FROM processed_at - event_time) * 1000)
            FROM transactions WHERE bank_id = ANY(%(banks)s)
            GROUP BY 1
            """,
            {"w": window_s, "banks": banks},
        ).fetchall()
    return {window_ms: {"rows": n, "p50": round(pct[0], 1), "p99": round(pct[1], 1)} for window_ms, n, pct in rows}


def latency_timeline(archive: dict[int, dict], alerts: list[tuple[int, float]],
                     window_s: int = LATENCY_WINDOW_S) -> list[dict]:
    """One entry per window of event time that has archive rows or alerts, oldest first: {"t_ms": window start,
    "archive": {rows, p50, p99} | None, "alerts": {alerts, p50, p95, p99}} (alerts: (event_time_ms, latency_ms))."""
    from rtfd.bench.alerts import percentiles

    by_window: dict[int, list[float]] = {}
    for event_ms, latency in alerts:
        by_window.setdefault(event_ms // (window_s * 1000) * window_s * 1000, []).append(latency)
    return [{"t_ms": t, "archive": archive.get(t), "alerts": percentiles(by_window.get(t, []))}
            for t in sorted(set(archive) | set(by_window))]


def run_bench(settings: Settings, cfg: BenchConfig, say=print) -> dict:
    from rtfd.bench.alerts import AlertLatencyProbe
    from rtfd.bench.report import write_reports
    from rtfd.bench.sampler import Sampler

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    ids_dir = Path(tempfile.mkdtemp(prefix=f"rtfd-bench-{cfg.run_id}-"))
    probe = AlertLatencyProbe(settings, set(cfg.banks))
    sampler = Sampler(settings, cfg.banks)
    probe.start()
    sampler.start()
    say(f"bench {cfg.run_id}: {cfg.producers} producer(s), "
        f"{'max rate' if not cfg.tps else f'{cfg.tps:.0f} tx/s'}, {cfg.duration:.0f}s (warm-up {cfg.warmup:.0f}s), "
        f"{cfg.cards_per_producer:,} cards per producer")
    procs = start_producers(cfg, ids_dir)
    sampler.watch_load([p.pid for p in procs])
    try:
        wait_producing(cfg, ids_dir, procs)
    except Exception:
        for p in procs:  # a bench that stops must not leave load running behind it
            p.kill()
            p.wait()
        raise
    t0_ms = int(time.time() * 1000)
    for p in procs:
        p.wait(timeout=cfg.duration + 300)
    say("producers done; waiting for the pipeline to drain")
    delivered = delivered_ids(cfg, ids_dir)
    archived = wait_archived(settings.postgres_dsn, cfg.banks, delivered, timeout=180)
    time.sleep(3)  # let the last alerts arrive
    sampler.stop()
    probe.stop()

    warm_ms = t0_ms + int(cfg.warmup * 1000)
    steady = [s for s in sampler.samples if s["t_ms"] >= warm_ms and s["t_ms"] <= t0_ms + cfg.duration * 1000]
    result = {
        "run_id": cfg.run_id,
        "command": " ".join(sys.argv),
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
                   "customers": cfg.cards_per_producer},
        "machine": machine_info(),
        "steady_state": summarize(steady),
        "sampler_errors": sampler.errors,
        "latency_ms": {
            "produce_to_archive": archive_latency_ms(settings.postgres_dsn, cfg.banks, warm_ms),
            "produce_to_alert": probe.percentiles(after_ms=warm_ms),
        },
        "zero_loss": zero_loss(settings.postgres_dsn, cfg.banks, delivered, archived),
        "producer_exit_codes": [p.returncode for p in procs],
        "per_component": sampler.component_summary(warm_ms),
        "timeline": sampler.samples,
        "latency_timeline": latency_timeline(archive_latency_timeline(settings.postgres_dsn, cfg.banks),
                                             probe.arrivals),
        "latency_window_s": LATENCY_WINDOW_S,
    }
    if cfg.baseline:
        from rtfd.bench.baseline import run_baseline, transaction_record_bytes

        say("raw Kafka baseline (same-size records, no Avro, no Flink)")
        size = transaction_record_bytes()
        result["baseline"] = run_baseline(settings, records=max(50_000, len(delivered)), size=size)
        pipeline = result["steady_state"].get("archived_per_s") or 0
        base = result["baseline"]["end_to_end_per_s"] or 1
        result["pipeline_vs_baseline"] = round(pipeline / base, 3)
    paths = write_reports(result, cfg.out_dir)
    say("wrote " + ", ".join(str(p) for p in paths))
    return result


def summarize(samples: list[dict]) -> dict:
    """Steady-state rates over the span of the samples: each total's growth from the first sample to the
    last, divided by the time between them. Under full load the sampler's readings come further apart than
    a second (or fail and are skipped), so an average of per-tick rates would weigh a short tick like a long
    one; the totals do not care how the span was cut."""
    if len(samples) < 2:
        return {}
    first, last = samples[0], samples[-1]
    span_s = (last["t_ms"] - first["t_ms"]) / 1000
    out = {
        f"{what}_per_s": round((last[f"{what}_total"] - first[f"{what}_total"]) / span_s, 1)
        for what in ("produced", "archived", "alerts", "dlq")
    }
    out["max_consumer_lag"] = max(s["lag"] for s in samples)
    out["seconds"] = round(span_s, 1)
    out["samples"] = len(samples)
    return out


def machine_info() -> dict:
    import os
    import platform

    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "run_uuid": uuid.uuid4().hex[:8],
    }


class StoppableThread(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def stop(self):
        self.stopping.set()
        self.join(30)
