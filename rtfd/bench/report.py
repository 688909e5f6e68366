"""Bench reports: the full JSON, a markdown table for docs/benchmarks.md, and a PNG of the timeline."""

from __future__ import annotations

import json
from pathlib import Path


def markdown(result: dict) -> str:
    s, lat, loss, m = result["steady_state"], result["latency_ms"], result["zero_loss"], result["machine"]
    cfg = result["config"]
    rate = "max" if not cfg["tps"] else f"{cfg['tps']:.0f}/s"
    lines = [
        f"### rtfd bench {result['run_id']}",
        "",
        f"`{result['command']}` — {m['cpus']} cores, {m['memory_gb']} GB, Python {m['python']}; "
        f"{cfg['producers']} producer(s) at {rate} for {cfg['duration']:.0f}s, warm-up {cfg['warmup']:.0f}s excluded, "
        f"{cfg.get('customers') or 2000:,} cards per producer",
        "",
        "| metric | value |",
        "|---|---|",
        f"| produced/s (steady) | {s.get('produced_per_s')} |",
        f"| archived/s (steady) | {s.get('archived_per_s')} |",
        f"| alerts/s (steady) | {s.get('alerts_per_s')} |",
        f"| max Kafka lag of the Flink job (committed at checkpoints) | {s.get('max_consumer_lag')} |",
        f"| sampler readings in the steady window (span s) / failed readings in the run | {s.get('samples')} "
        f"({s.get('seconds')}) / {len(result.get('sampler_errors', []))} |",
        f"| produce → archive row p50 / p95 / p99 (ms) | {fmt(lat['produce_to_archive'])} |",
        f"| produce → alert p50 / p95 / p99 (ms) | {fmt(lat['produce_to_alert'])} "
        f"({lat['produce_to_alert'].get('alerts', 0)} alerts) |",
        f"| zero loss (delivered ids ⊆ archived ids) | {'yes' if loss['ok'] else 'NO'}: {loss['delivered']} delivered, "
        f"{loss['missing']} missing, {loss['duplicate_rows']} duplicate rows |",
    ]
    if "baseline" in result:
        b = result["baseline"]
        lines += [
            f"| raw Kafka baseline ({b['record_bytes']} B records) produce/s, consume/s, end-to-end/s | "
            f"{b['produced_per_s']}, {b['consumed_per_s']}, {b['end_to_end_per_s']} |",
            f"| pipeline archived/s ÷ baseline end-to-end/s | {result.get('pipeline_vs_baseline')} |",
        ]
    lines += ["", "| component | CPU % of one core (mean) | RSS MB (max) |", "|---|---|---|"]
    for name, use in sorted(result["per_component"].items()):
        lines.append(f"| {name} | {use['cpu_pct_mean']} | {use['rss_mb_max']} |")
    return "\n".join(lines) + "\n"


def fmt(p: dict) -> str:
    return " / ".join(str(p.get(k)) for k in ("p50", "p95", "p99"))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result["timeline"]
    if not timeline:
        return
    t0 = timeline[0]["t_ms"]
    xs = [(s["t_ms"] - t0) / 1000 for s in timeline]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for key, label in (("produced_per_s", "produced/s"), ("archived_per_s", "archived/s"),
                       ("alerts_per_s", "alerts/s")):
        top.plot(xs, [s[key] for s in timeline], label=label)
    warm = (result["config"]["warmup"] * 1000 + (timeline[0]["t_ms"] - t0)) / 1000
    top.axvline(warm, color="grey", linestyle="--", label="end of warm-up")
    top.set_ylabel("records per second")
    top.legend()
    top.set_title(f"rtfd bench {result['run_id']}")
    middle.plot(xs, [s["lag"] for s in timeline], label="Flink consumer lag (records)")
    middle.plot(xs, [max(0, s.get("backlog", 0)) for s in timeline], label="not yet archived")
    middle.set_ylabel("records")
    middle.legend()
    plot_latency(bottom, result.get("latency_timeline", []), t0, result.get("latency_window_s", 10))
    bottom.axvline(warm, color="grey", linestyle="--")
    bottom.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(ax, windows: list[dict], t0_ms: int, width_s: float) -> None:
    """p50 and p99 from produce to archive row and to alert, per window of event time (bench.latency_timeline),
    each point at its window's middle."""
    series = (("archive", "p50", "archive row p50", "tab:orange", "-"), ("archive", "p99", "archive row p99",
              "tab:orange", ":"), ("alerts", "p50", "alert p50", "tab:green", "-"),
              ("alerts", "p99", "alert p99", "tab:green", ":"))
    for kind, pct, label, color, style in series:
        points = [((w["t_ms"] - t0_ms) / 1000 + width_s / 2, w[kind][pct]) for w in windows
                  if w.get(kind) and w[kind].get(pct) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, color=color, linestyle=style)
    ax.set_ylabel("latency from produce (ms)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def write_reports(result: dict, out_dir: Path) -> list[Path]:
    stem = out_dir / f"bench-{result['run_id']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(result, indent=2, default=str))
    paths[1].write_text(markdown(result))
    plot(result, paths[2])
    return paths
