"""`rtfd replay FILE` and `rtfd labels load FILE`: files into Kafka, invalid rows to a reject file.

Exit codes: 0 when every valid row was delivered (rejected rows alone do not fail the run: they are
reported and written to the reject file), 1 when the file cannot be loaded or a delivery failed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

import schemas
from rtfd import topology
from rtfd.config import Settings
from services.producer.cli import install_stop_signals, setup_logging
from services.replay.labels import load_labels
from services.replay.loader import LoadSummary
from services.replay.readers import FileFormatError
from services.replay.replay import replay_file

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
RATE = click.option("--rate", type=click.FloatRange(min=0, min_open=True),
                    help="At most this many messages per second (default: as fast as possible).")
REJECT = click.option("--reject-file", type=click.Path(dir_okay=False, path_type=Path),
                      help="Where invalid rows go (default: FILE.rejects.jsonl).")


def _finish(what: str, run) -> None:
    setup_logging()
    stop = threading.Event()
    install_stop_signals(stop)
    try:
        summary: LoadSummary = run(stop)
    except FileFormatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{what}: {summary.summary()}", err=True)
    if not summary.ok:
        sys.exit(1)


@click.command("replay")
@click.argument("file", type=FILE)
@RATE
@REJECT
@click.option("--schema-version", type=click.Choice([str(v) for v in schemas.TRANSACTION_VERSIONS]),
              default=str(schemas.LATEST_TRANSACTION_VERSION), show_default=True,
              help="Transaction schema version to write; v1 files must leave device_id empty or absent.")
@click.option("--topic", default=topology.TRANSACTIONS, show_default=True)
def replay(file, rate, reject_file, schema_version, topic):
    """Replay a CSV, JSON Lines (.jsonl/.ndjson) or Parquet file of transactions into Kafka.

    Columns are the transaction field names (device_id optional); event_time is ISO-8601 (no zone = UTC)
    or epoch millis and is kept as in the file. Reject lines are numbered like the file: CSV header =
    line 1, so the first data row is line 2; JSON Lines by physical line; Parquet by 1-based row."""
    _finish(str(file), lambda stop: replay_file(Settings(), file, rate, reject_file, int(schema_version),
                                                topic=topic, keep_ids=False, stop=stop))


@click.group("labels")
def labels():
    """Fraud labels (ground truth) for the fraud-labels topic."""


@labels.command("load")
@click.argument("file", type=FILE)
@RATE
@REJECT
@click.option("--topic", default=topology.FRAUD_LABELS, show_default=True)
def load(file, rate, reject_file, topic):
    """Load a CSV/JSONL/Parquet file with columns transaction_id, is_fraud[, scenario] (source="file")."""
    _finish(str(file), lambda stop: load_labels(Settings(), file, rate, reject_file, topic=topic,
                                                keep_ids=False, stop=stop))
