"""Run the labels consumer: `python -m services.labels [--topic T] [--dlq-topic T] [--group G]`.

Kafka, the registry and PostgreSQL come from rtfd.config.Settings (RTFD_*). SIGTERM/SIGINT finish the batch in
hand, then close.
"""

from __future__ import annotations

import argparse
import threading

from rtfd.config import Settings
from services.labels import DLQ_TOPIC, GROUP_ID, LABELS_TOPIC
from services.labels.consumer import LabelConsumer
from services.producer.cli import install_stop_signals, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.labels", description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default=LABELS_TOPIC, help="labels topic (default: %(default)s)")
    parser.add_argument("--dlq-topic", default=DLQ_TOPIC, help="dead-letter topic (default: %(default)s)")
    parser.add_argument("--group", default=GROUP_ID, help="consumer group (default: %(default)s)")
    parser.add_argument("--progress-interval", type=float, default=10.0,
                        help="seconds between progress log lines (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.progress_interval <= 0:
        parser.error(f"--progress-interval must be positive, got {args.progress_interval}")

    setup_logging()
    stop = threading.Event()
    install_stop_signals(stop)
    consumer = LabelConsumer(Settings(), topic=args.topic, dlq_topic=args.dlq_topic, group_id=args.group,
                             progress_interval=args.progress_interval)  # fmt: skip
    consumer.run(stop)


if __name__ == "__main__":
    main()
