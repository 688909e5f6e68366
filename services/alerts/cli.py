"""`rtfd alerts list | export | resolve`: read and triage the alerts the consumer stored in PostgreSQL."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from rtfd.config import Settings
from services.alerts import store
from services.alerts.alert import SEVERITIES, STATUSES, iso
from services.alerts.export import FORMATS, write_export

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'30m', '1h', '2d' (that long ago) or an ISO-8601 time (no zone = UTC)."""
    match = _RELATIVE.match(text)
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2].lower()]: float(match[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration like 30m, 1h, 2d nor an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class SinceType(click.ParamType):
    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _connect():
    try:
        return store.connect(Settings().postgres_dsn)
    except Exception as exc:  # noqa: BLE001 - any connection failure gets the same hint
        raise click.ClickException(f"cannot reach PostgreSQL ({exc}); is the stack up (`rtfd status`)?") from None


@click.group("alerts")
def alerts():
    """Fraud alerts stored by the alert consumer: list, export, triage."""


@alerts.command("list")
@click.option("--since", type=SinceType(), help="Detected since: a duration (30m, 1h, 2d) or an ISO-8601 time.")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--bank", help="Only this bank's alerts, e.g. bank-a.")
@click.option("--severity", type=click.Choice(SEVERITIES, case_sensitive=False))
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def list_(since, status, bank, severity, limit):
    """Alerts, newest first."""
    with _connect() as conn:
        rows = store.list_alerts(conn, since=since, status=status, bank=bank,
                                 severity=severity.upper() if severity else None, limit=limit)
    click.echo(format_table(rows))
    click.echo(f"{len(rows)} alert(s){' (limit reached)' if len(rows) == limit else ''}", err=True)


TABLE = (("detected_at", 24), ("alert_id", 0), ("bank_id", 0), ("severity", 0), ("score", 5), ("status", 0),
         ("amount", 0), ("rules", 0))  # fmt: skip


def format_table(rows: list[dict]) -> str:
    """A plain text table: one line per alert, columns as wide as their widest cell."""
    cells = [[
        iso(r["detected_at"]), r["alert_id"], r["bank_id"], r["severity"], f"{r['score']:.2f}", r["status"],
        f"{r['amount_minor'] / 100:.2f} {r['currency']}", ",".join(r["rules"]),
    ] for r in rows]  # fmt: skip
    header = [name for name, _ in TABLE]
    widths = [max(len(c) for c in col) for col in zip(header, *cells, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *cells]]
    return "\n".join(lines)


@alerts.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), required=True,
              help="File to write ('-' for standard output).")
def export(fmt, out):
    """Every alert in detected_at order, with its triage state. Lists (rules, reasons) are JSON arrays in CSV."""
    with _connect() as conn:
        if str(out) == "-":
            n = write_export(conn, sys.stdout, fmt)
        else:
            with open(out, "w", newline="", encoding="utf-8") as f:
                n = write_export(conn, f, fmt)
    click.echo(f"exported {n} alert(s) to {out}", err=True)


@alerts.command("resolve")
@click.argument("alert_id")
@click.option("--as", "as_", type=click.Choice(["fraud", "legit"]), required=True,
              help="fraud -> confirmed_fraud, legit -> false_positive.")
@click.option("--note", help="Why; kept when not given.")
@click.option("--assignee", help="Who triaged it; kept when not given.")
def resolve(alert_id, as_, note, assignee):
    """Record the verdict on one alert."""
    with _connect() as conn:
        try:
            row = store.resolve(conn, alert_id, as_, note=note, assignee=assignee)
        except store.UnknownAlertError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{row['alert_id']}: {row['status']} (triaged at {iso(row['triaged_at'])})")
