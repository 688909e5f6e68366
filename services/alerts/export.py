"""Alerts to files: CSV (lists as JSON arrays, times ISO-8601 UTC) or JSON Lines, streamed row by row."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import TextIO

import psycopg

from services.alerts import store
from services.alerts.alert import iso

FORMATS = ("csv", "jsonl")


def _plain(row: dict) -> dict:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


def write_export(conn: psycopg.Connection, out: TextIO, fmt: str) -> int:
    """Write every alert (detected_at order) to `out`; return how many."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=store.COLUMNS)
        writer.writeheader()
    for row in store.iter_alerts(conn):
        row = _plain(row)
        if fmt == "csv":
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
        else:
            out.write(json.dumps(row) + "\n")
        n += 1
    return n
