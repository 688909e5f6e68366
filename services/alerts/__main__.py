"""Run the alert consumer: `python -m services.alerts [--topic T] [--dlq-topic T] [--group G]`.

Kafka, the registry and PostgreSQL come from rtfd.config.Settings (RTFD_*); the webhook from AlertSettings
(RTFD_ALERT_WEBHOOK_URL). SIGTERM/SIGINT finish the batch in hand, then close.
"""

from __future__ import annotations

import argparse
import threading

from rtfd.config import Settings
from services.alerts import ALERTS_TOPIC, DLQ_TOPIC, GROUP_ID
from services.alerts.config import AlertSettings
from services.alerts.consumer import AlertConsumer
from services.alerts.webhook import WebhookNotifier
from services.producer.cli import install_stop_signals, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default=ALERTS_TOPIC, help="alerts topic (default: %(default)s)")
    parser.add_argument("--dlq-topic", default=DLQ_TOPIC, help="dead-letter topic (default: %(default)s)")
    parser.add_argument("--group", default=GROUP_ID, help="consumer group (default: %(default)s)")
    args = parser.parse_args(argv)

    setup_logging()
    settings, alert_settings = Settings(), AlertSettings()
    stop = threading.Event()
    install_stop_signals(stop)
    consumer = AlertConsumer(
        settings, topic=args.topic, dlq_topic=args.dlq_topic, group_id=args.group,
        webhook=WebhookNotifier.from_settings(alert_settings, settings.postgres_dsn),
        progress_interval=alert_settings.alert_progress_interval,
    )  # fmt: skip
    consumer.run(stop)


if __name__ == "__main__":
    main()
