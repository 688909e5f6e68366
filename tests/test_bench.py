"""`rtfd bench`'s load: the options reach the producer processes (no stack; the measurements themselves are
the benchmark's, docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

from rtfd import bench
from rtfd.bench.catchup import markdown
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
