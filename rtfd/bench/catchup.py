"""`rtfd bench --backlog N`: how fast the job drains a backlog, with the producers out of the measurement.

On a 2-core machine the simulating producers compete with the pipeline for the same cores, so a run at a
fixed rate cannot show what the job itself sustains. Here the fraud job is stopped with a savepoint, N
transactions are produced while nothing consumes them, and the job is resubmitted from that savepoint: the
drain rate (archived rows/s from the first to the last new row) is the job's throughput with every
transaction archived and every rule evaluated, and the zero-loss check still holds it to every id.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rtfd.bench import BenchConfig, archived_ids, delivered_ids, machine_info, start_producers, zero_loss
from rtfd.config import Settings
from rtfd.stack import NativeStack
from rtfd.stack.flink import JOB_FILE, JOB_NAME

POLL_S = 2.0


def run_catchup(settings: Settings, cfg: BenchConfig, backlog: int, say=print,
                allow_non_restored: bool = False) -> dict:
    import json

    from rtfd.bench.sampler import Sampler

    stack = NativeStack(settings)
    job = stack.flink.find_job(JOB_NAME, live_only=True)
    if job is None:
        raise RuntimeError(f"no live {JOB_NAME} on the native cluster: `rtfd up` (or `rtfd job submit`) first")
    say(f"bench {cfg.run_id}: stopping {JOB_NAME} with a savepoint")
    savepoint = stack.flink.stop_with_savepoint(job["jid"])
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    ids_dir = Path(tempfile.mkdtemp(prefix=f"rtfd-bench-{cfg.run_id}-"))
    cfg.tps = None
    per_producer = -(-backlog // cfg.producers)
    say(f"producing a backlog of {per_producer * cfg.producers:,} transactions ({cfg.producers} producers)")
    started = time.monotonic()
    try:
        procs = start_producers(cfg, ids_dir, count=per_producer)
        for p in procs:
            p.wait(timeout=3600)
        delivered = delivered_ids(cfg, ids_dir)
        say(f"{len(delivered):,} delivered in {time.monotonic() - started:.0f}s; resubmitting from {savepoint}")
    finally:  # never leave the platform without its job
        sampler = Sampler(settings, cfg.banks)
        sampler.start()
        submitted = time.monotonic()
        job_id = stack.flink.submit(JOB_FILE, JOB_NAME, savepoint, allow_non_restored)
        stack.flink.wait_running(job_id)
    running = time.monotonic()
    first = last = None
    archived: set[str] = set()
    while time.monotonic() < running + 1800:
        archived = archived_ids(settings.postgres_dsn, cfg.banks)
        if archived and first is None:
            first = (time.monotonic(), len(archived), int(time.time() * 1000))
        if delivered <= archived:
            last = (time.monotonic(), len(archived))
            break
        time.sleep(POLL_S)
    sampler.stop()
    drain_s = last[0] - first[0] if first and last else None
    result = {
        "run_id": cfg.run_id,
        "mode": "catch-up",
        "command": " ".join(sys.argv),
        "config": {"producers": cfg.producers, "backlog": len(delivered), "fraud_rate": cfg.fraud_rate,
                   "customers": cfg.cards_per_producer},
        "machine": machine_info(),
        "catch_up": {
            "job_running_after_s": round(running - submitted, 1),
            "first_row_after_s": round(first[0] - running, 1) if first else None,
            "drain_s": round(drain_s, 1) if drain_s else None,
            "archived_per_s": round((last[1] - first[1]) / drain_s) if drain_s else None,
            "alerts": sampler.samples[-1]["alerts_total"] if sampler.samples else 0,
        },
        "zero_loss": zero_loss(settings.postgres_dsn, cfg.banks, delivered, archived),
        "per_component": sampler.component_summary(first[2] if first else 0),
        "sampler_errors": sampler.errors,
        "timeline": sampler.samples,
    }
    stem = cfg.out_dir / f"bench-{cfg.run_id}-catchup"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    stem.with_suffix(".md").write_text(markdown(result))
    say(f"wrote {stem}.json, {stem}.md")
    return result


def markdown(result: dict) -> str:
    c, loss, m = result["catch_up"], result["zero_loss"], result["machine"]
    lines = [
        f"### rtfd bench {result['run_id']} (catch-up)",
        "",
        f"`{result['command']}` — {m['cpus']} cores, {m['memory_gb']} GB, Python {m['python']}; backlog of "
        f"{result['config']['backlog']:,} transactions produced while the job was stopped, "
        f"{result['config'].get('customers', 2000):,} customers (cards) per producer",
        "",
        "| metric | value |",
        "|---|---|",
        f"| job RUNNING after resubmit (s) | {c['job_running_after_s']} |",
        f"| first new archive row after RUNNING (s) | {c['first_row_after_s']} |",
        f"| drain time, first to last row (s) | {c['drain_s']} |",
        f"| **archived/s while draining** (every rule evaluated) | **{c['archived_per_s']}** |",
        f"| alerts written (share of the backlog) | {c['alerts']} "
        f"({100 * c['alerts'] / max(result['config']['backlog'], 1):.1f} %) |",
        f"| zero loss (delivered ids ⊆ archived ids) | {'yes' if loss['ok'] else 'NO'}: {loss['delivered']} "
        f"delivered, {loss['missing']} missing, {loss['duplicate_rows']} duplicate rows |",
        "",
        "| component | CPU % of one core (mean while draining) | RSS MB (max) |",
        "|---|---|---|",
    ]
    for name, use in sorted(result["per_component"].items()):
        lines.append(f"| {name} | {use['cpu_pct_mean']} | {use['rss_mb_max']} |")
    return "\n".join(lines) + "\n"
