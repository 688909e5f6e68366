"""Chaos reports: a human table per run and the JSON written beside it."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("scenario", "produced", "archived", "missing", "dup rows", "DLQ'd", "alerts", "dup alerts",
           "topic redeliv.", "recovery s", "bound s", "caught up s", "result")


def row(report: dict) -> list[str]:
    c = report["counts"]
    recoveries = [p["recovery_s"] for p in report["phases"]]
    recovery = "-" if not recoveries else "/".join("n/a" if r is None else f"{r:.1f}" for r in recoveries)
    bound = "/".join(f"{p['bound_s']:.0f}" for p in report["phases"]) or "-"
    caught = "/".join("n/a" if p.get("caught_up_s") is None else f"{p['caught_up_s']:.1f}"
                      for p in report["phases"]) or "-"
    return [
        report["scenario"], str(c["delivered"]), str(c["archived"]), str(c["missing"]),
        str(c["duplicate_archive_rows"]), str(c.get("dlq_records", "-")), str(c["alerts_stored"]),
        str(c["duplicate_alerts"]), str(c["alerts_topic_redelivered"]), recovery, bound, caught,
        "PASS" if report["passed"] else "FAIL",
    ]  # fmt: skip


def table(reports: list[dict], markdown: bool = False) -> str:
    rows = [list(COLUMNS)] + [row(r) for r in reports]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def failures(report: dict) -> list[str]:
    """The checks that failed, with the phase or count that explains each."""
    out = [name for name, ok in report["checks"].items() if not ok]
    for phase in report["phases"]:
        if not phase["ok"]:
            out.append(f"{phase['fault']}: recovery {phase['recovery_s']}s > bound {phase['bound_s']}s "
                       f"{phase.get('unhealthy', '')}".strip())
    if report.get("error"):
        out.append(f"error: {report['error']}")
    return out


def write(reports: list[dict], out_dir: Path, run_id: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"chaos-{run_id}.json"
    path.write_text(json.dumps(reports, indent=2, default=str))
    return path
