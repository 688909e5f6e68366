"""The labels consumer: ground-truth fraud labels from Kafka into PostgreSQL (`fraud_labels`), one row per transaction.

label.py checks a decoded record, store.py holds every query on `fraud_labels` (schemas/postgres/0004), consumer.py
is the sink (the shared loop of services/kafka_sink.py); `python -m services.labels` runs it (component
`labels-consumer` of `rtfd up`). The dashboard's rule precision and recall and the Dagster marts read the table.
"""

from __future__ import annotations

from rtfd import topology

LABELS_TOPIC = topology.FRAUD_LABELS
DLQ_TOPIC = topology.FRAUD_LABELS_DLQ
GROUP_ID = "rtfd-labels-consumer"
