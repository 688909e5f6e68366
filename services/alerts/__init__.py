"""The alert consumer: fraud alerts from Kafka into PostgreSQL (`alerts`), once per alert_id, plus triage.

consumer.py reads `fraud-alerts`, store.py holds every query on the `alerts` table, webhook.py notifies an
optional HTTP endpoint, cli.py is `rtfd alerts ...`; `python -m services.alerts` runs the consumer.
"""

from __future__ import annotations

from rtfd import topology

ALERTS_TOPIC = topology.FRAUD_ALERTS
# Poison alerts (undecodable, or failing validation) go here with their original bytes.
# Belongs in rtfd.topology (with a TopicSpec in TOPICS); until it is there the consumer creates it.
DLQ_TOPIC = getattr(topology, "FRAUD_ALERTS_DLQ", "fraud-alerts-dlq")
GROUP_ID = "rtfd-alert-consumer"
