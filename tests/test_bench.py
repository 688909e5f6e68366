"""`rtfd bench`'s load: the options reach the producer processes (no stack; the measurements themselves are
the benchmark's, docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from rtfd import bench, topology
from rtfd.bench.catchup import markdown
from rtfd.bench.sampler import Sampler, sample
from services.producer.cli import produce


def test_producers_get_the_world_size_rate_and_fraud_rate(monkeypatch, tmp_path: Path):
    started = []

    class FakePopen:
        def __init__(self, cmd, **kwargs):
            started.append((cmd, kwargs))

    monkeypatch.setattr(bench, "Popen", FakePopen)
    cfg = bench.BenchConfig(producers=2, tps=3000.0, fraud_rate=0.01, customers=50_000, run_id="unit")
    bench.start_producers(cfg, tmp_path, count=10)
    assert len(started) == 2
    for i, (cmd, kwargs) in enumerate(started):
        assert cmd[1:4] == ["-m", "rtfd.cli", "produce"] and kwargs["start_new_session"]
        params = produce.make_context("produce", cmd[4:]).params  # parsed as the producer process will
        assert params["bank"] == f"bench-unit-{i}" and params["customers"] == 50_000
        assert params["tps"] == 1500.0 and params["count"] == 10 and params["fraud_rate"] == 0.01
        assert params["schema_version"] == ("2" if i % 2 else "1")


def test_without_customers_the_world_grows_with_the_rate_so_each_card_pays_every_150_s(monkeypatch, tmp_path):
    assert bench.BenchConfig(producers=2, tps=2000.0).cards_per_producer == 150_000
    assert bench.BenchConfig(producers=4, tps=2000.0).cards_per_producer == 75_000
    assert bench.BenchConfig(producers=2, tps=20.0).cards_per_producer == bench.MAX_RATE_CARDS  # never tiny
    assert bench.BenchConfig(producers=2, tps=None).cards_per_producer == bench.MAX_RATE_CARDS
    assert bench.BenchConfig(producers=2, tps=2000.0, customers=1234).cards_per_producer == 1234
    started = []
    monkeypatch.setattr(bench, "Popen", lambda cmd, **kw: started.append(cmd))
    bench.start_producers(bench.BenchConfig(producers=2, tps=2000.0, run_id="auto"), tmp_path)
    assert [produce.make_context("produce", cmd[4:]).params["customers"] for cmd in started] == [150_000] * 2


def test_a_producer_that_dies_before_sending_stops_the_bench_with_its_bank_named(tmp_path: Path):
    import subprocess
    import sys

    import pytest

    cfg = bench.BenchConfig(producers=2, run_id="dead")
    (tmp_path / f"{cfg.banks[0]}.ids").write_text("")  # the first one is sending
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]),
             subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])]
    try:
        with pytest.raises(RuntimeError, match=f"{cfg.banks[1]}.*exited before sending"):
            bench.wait_producing(cfg, tmp_path, procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_catch_up_report_states_the_world_and_the_alert_share():
    result = {
        "run_id": "r", "command": "rtfd bench --backlog 1000", "machine": {"cpus": 2, "memory_gb": 23.5,
                                                                             "python": "3.11"},
        "config": {"producers": 2, "backlog": 1000, "fraud_rate": 0.005, "customers": 50_000},
        "catch_up": {"job_running_after_s": 30.0, "first_row_after_s": 0.1, "drain_s": 2.0, "archived_per_s": 500,
                     "alerts": 25},
        "zero_loss": {"ok": True, "delivered": 1000, "missing": 0, "duplicate_rows": 0},
        "per_component": {"kafka": {"cpu_pct_mean": 10.0, "rss_mb_max": 400}},
    }
    text = markdown(result)
    assert "50,000 customers (cards) per producer" in text
    assert "| alerts written (share of the backlog) | 25 (2.5 %) |" in text


def readings(*points: tuple[float, int, int, int]) -> list[dict]:
    """Sampler readings at (seconds, transactions end offset, archived rows, alerts end offset)."""
    return [{"t_ms": int(t * 1000), "archived": archived, "lag": 0, topology.TRANSACTIONS: produced,
             topology.FRAUD_ALERTS: alerts, topology.TRANSACTIONS_DLQ: 0} for t, produced, archived, alerts in points]


def test_steady_rates_come_from_the_totals_whatever_the_gaps_between_readings():
    # a loaded machine: one reading every second, then one 30 s later (slow broker), then one more second
    first, *rest = readings((0, 1000, 0, 10), (1, 3000, 2000, 12), (31, 63000, 62000, 72), (32, 65000, 64000, 74))
    samples, last = [], first
    for now in rest:
        samples.append(sample(first, last, now, 0.01, {}))
        last = now
    assert [round(s["produced_per_s"]) for s in samples] == [2000, 2000, 2000]
    steady = bench.summarize(samples)
    assert steady["produced_per_s"] == 2000.0 and steady["archived_per_s"] == 2000.0
    assert steady["alerts_per_s"] == 2.0 and steady["seconds"] == 31.0 and steady["samples"] == 3
    # the old way, a mean of per-tick rates, is only right here because every tick kept the same rate
    skewed = readings((0, 0, 0, 0), (1, 100, 0, 0), (31, 60100, 60000, 0), (32, 60200, 60100, 0))
    samples = [sample(skewed[0], a, b, 0.01, {}) for a, b in zip(skewed, skewed[1:], strict=False)]
    assert bench.summarize(samples)["produced_per_s"] == round(60100 / 31, 1)
    assert round(sum(s["produced_per_s"] for s in samples) / 3) != round(60100 / 31)


def test_a_failed_reading_is_noted_and_the_timeline_goes_on(monkeypatch):
    sampler = Sampler.__new__(Sampler)  # no stack: only the bookkeeping of readings
    sampler.samples, sampler.errors, sampler._first, sampler._last = [], [], None, None
    monkeypatch.setattr(sampler, "usage", lambda: {})
    points = iter(readings((0, 0, 0, 0), (1, 500, 400, 1), (9, 4500, 4400, 9)))

    def flaky() -> dict:
        raise TimeoutError("list_topics timed out")

    sampler.record(lambda: next(points))
    sampler.record(lambda: next(points))
    sampler.record(flaky)
    sampler.record(lambda: next(points))
    assert len(sampler.samples) == 2 and sampler.errors and "TimeoutError: list_topics timed out" in sampler.errors[0]
    assert sampler.samples[-1]["produced_per_s"] == 500.0  # 4,000 over the 8 s the failed tick stretched
    assert sampler.samples[-1]["produced_total"] == 4500 and sampler.samples[-1]["alerts_total"] == 9


def test_a_component_the_supervisor_restarted_is_not_counted_twice():
    import subprocess
    import sys
    import time

    import psutil

    from rtfd.bench.sampler import own_family

    # a supervisor (this test) that restarted a component (a child), which has a worker of its own (a grandchild)
    component = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                  "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
                                  "time.sleep(30)"])
    try:
        me = psutil.Process()
        deadline = time.monotonic() + 10
        while not psutil.Process(component.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = psutil.Process(component.pid).children()[0]
        supervisor = {p.pid for p in own_family(me, {component.pid})}
        assert me.pid in supervisor and not {component.pid, worker.pid} & supervisor
        assert {component.pid, worker.pid} <= {p.pid for p in own_family(me, set())}  # what was counted before
        assert {p.pid for p in own_family(psutil.Process(component.pid), {me.pid})} == {component.pid, worker.pid}
    finally:
        for p in psutil.Process(component.pid).children(recursive=True):
            p.kill()
        component.kill()
        component.wait()


def test_the_archive_counter_counts_each_row_of_its_banks_once_as_readings_go_on(stack):
    """Against the stack's PostgreSQL: rows stamped long ago, rows stamped just now, rows of another bank and
    a row that became visible after a later reading than its stamp (a slow insert) each count once, however
    many readings there are."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from rtfd.bench.sampler import ArchiveCounter
    from tests.dashboards.seed import insert_transaction, new_bank

    ours, other = new_bank(), new_bank()
    counter = ArchiveCounter([ours])
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]

        def insert(bank: str, stamped_s_ago: float, n: int = 1) -> None:
            at = now - timedelta(seconds=stamped_s_ago)
            for _ in range(n):
                insert_transaction(conn, bank, datetime(2026, 1, 1, tzinfo=UTC), processed_at=at)

        insert(ours, 3600, 3)
        insert(other, 0, 5)
        assert counter.read(conn) == 3  # the first reading counts every row of its banks
        insert(ours, 0, 2)
        assert counter.read(conn) == 5
        assert counter.read(conn) == 5  # rerunning changes nothing: settled rows are not counted twice
        insert(ours, ArchiveCounter.SETTLE_S / 2)  # stamped before the last reading, visible only now
        insert(ours, 0, 4)
        assert counter.read(conn) == 10
        assert counter.read(conn) == 10
        assert counter.settled == 3  # only the hour-old rows are past the settling time; the rest are recounted


def test_the_bench_producers_get_a_row_of_their_own_beside_the_components():
    import subprocess
    import sys
    import time

    from rtfd.bench.sampler import LOAD_ROW

    sampler = Sampler.__new__(Sampler)  # no stack: no components, only the load it is told to watch
    sampler.components, sampler.load, sampler._procs = {}, [], {}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        sampler.watch_load([p.pid for p in busy] + [2**22 + 1])  # a pid that is gone is skipped
        sampler.usage()  # primes the CPU counters
        time.sleep(0.5)
        row = sampler.usage()[LOAD_ROW]
        assert len(sampler.load) == 2 and row["cpu_pct"] > 0 and row["rss_mb"] > 0
    finally:
        for p in busy:
            p.kill()
            p.wait()


def test_the_latency_timeline_gives_each_window_of_event_time_its_own_percentiles(stack, tmp_path: Path):
    """Against the stack's PostgreSQL: archive rows in two 10-s windows of event time with known delays, alerts
    in one of them and in a third; each window's percentiles are its own rows', and the report plots them."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from rtfd.bench.report import write_reports
    from tests.dashboards.seed import insert_transaction, new_bank

    bank = new_bank()
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        for second, delay_ms in ((1, 100), (2, 100), (3, 300), (12, 1000), (19, 3000)):
            at = start + timedelta(seconds=second)
            insert_transaction(conn, bank, at, processed_at=at + timedelta(milliseconds=delay_ms))
    archive = bench.archive_latency_timeline(stack.postgres_dsn, [bank])
    assert sorted(archive) == [start_ms, start_ms + 10_000]
    assert archive[start_ms] == {"rows": 3, "p50": 100.0, "p99": 296.0}  # percentile_cont interpolates
    assert archive[start_ms + 10_000]["rows"] == 2 and archive[start_ms + 10_000]["p50"] == 2000.0

    alerts = [(start_ms + 5_000, 250.0), (start_ms + 25_000, 400.0), (start_ms + 29_999, 600.0)]
    timeline = bench.latency_timeline(archive, alerts)
    assert [w["t_ms"] for w in timeline] == [start_ms, start_ms + 10_000, start_ms + 20_000]
    assert [w["alerts"]["alerts"] for w in timeline] == [1, 0, 2]
    assert timeline[0]["alerts"]["p99"] == 250.0 and timeline[2]["alerts"]["p50"] == 600.0
    assert timeline[2]["archive"] is None  # alerts, but no archive row of that window

    result = {"run_id": "latency", "command": "rtfd bench", "config": {"producers": 1, "tps": 10.0, "duration": 30,
              "warmup": 0, "customers": 10}, "machine": {"cpus": 2, "memory_gb": 1, "python": "3.11"},
              "steady_state": {}, "latency_ms": {"produce_to_archive": {}, "produce_to_alert": {}},
              "zero_loss": {"ok": True, "delivered": 5, "missing": 0, "duplicate_rows": 0}, "per_component": {},
              "timeline": [{"t_ms": start_ms + 1000 * i, "produced_per_s": 1, "archived_per_s": 1, "alerts_per_s": 0,
                            "lag": 0} for i in range(30)],
              "latency_timeline": timeline, "latency_window_s": bench.LATENCY_WINDOW_S}
    assert all(path.exists() for path in write_reports(result, tmp_path))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtfd.bench.report import plot_latency

    fig, ax = plt.subplots()
    plot_latency(ax, timeline, start_ms, bench.LATENCY_WINDOW_S)
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    plt.close(fig)
    assert lines["alert p50"] == ([5.0, 25.0], [250.0, 600.0])  # each window at its middle; none without alerts
    assert lines["archive row p99"] == ([5.0, 15.0], [296.0, archive[start_ms + 10_000]["p99"]])
