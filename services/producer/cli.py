"""`rtfd produce`: one bank's simulated transactions streamed to Kafka (see services.producer.run)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

import schemas
from rtfd import topology
from rtfd.config import Settings
from services.producer.run import run_producer


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT end the run gracefully: stop producing, publish waiting labels, flush."""

    def handler(signum, _frame):
        logging.getLogger(__name__).info("signal %s: stopping after a flush", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def setup_logging() -> None:
    # a no-op when the rtfd CLI already configured logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the registry client logs every HTTP request at INFO; only its problems are of interest here
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


@click.command("produce")
@click.option("--bank", required=True, help="Bank id, e.g. bank-a; also the customers' world.")
@click.option("--tps", type=click.FloatRange(min=0, min_open=True), default=500, show_default=True,
              help="Transactions per second.")
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(min=0), help="Stop after this many transactions.")
@click.option("--schema-version", type=click.Choice([str(v) for v in schemas.TRANSACTION_VERSIONS]),
              default=str(schemas.LATEST_TRANSACTION_VERSION), show_default=True,
              help="Transaction schema version to write (v1 has no device_id).")
@click.option("--seed", type=int, help="Seed for a reproducible world and sequence of events.")
@click.option("--fraud-rate", type=click.FloatRange(0, 1), default=0.005, show_default=True,
              help="Share of events that start a fraud episode.")
@click.option("--label-delay", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds before a fraud label follows its transaction (like a chargeback).")
@click.option("--customers", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Customers (one card each) in the bank's world; more spread a high rate over more cards.")
@click.option("--ids-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write delivered transaction ids to this file, one per line.")
@click.option("--topic", default=topology.TRANSACTIONS, show_default=True, help="Transactions topic.")
@click.option("--labels-topic", default=topology.FRAUD_LABELS, show_default=True, help="Fraud labels topic.")
def produce(bank, tps, duration, count, schema_version, seed, fraud_rate, label_delay, customers, ids_out, topic,
            labels_topic):
    """Stream one bank's simulated card transactions (with injected fraud) to Kafka.

    Runs until --count or --duration is reached, or until SIGTERM/SIGINT; exits non-zero if any delivery
    failed."""
    setup_logging()
    stop = threading.Event()
    install_stop_signals(stop)
    report = run_producer(Settings(), bank, tps, count=count, duration=duration,
                          schema_version=int(schema_version), seed=seed, fraud_rate=fraud_rate,
                          label_delay=label_delay, customers=customers, topic=topic, labels_topic=labels_topic,
                          ids_out=ids_out, keep_ids=False, stop=stop)
    click.echo(f"{bank}: {report.summary()}", err=True)
    if not report.ok:
        sys.exit(1)
