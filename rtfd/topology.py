"""The platform's topology in one place: topic names, registry subjects, component ports.

Everything that talks to Kafka, the registry or a server imports names from here, so the native stack,
compose.yaml and the tests cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Kafka topics -----------------------------------------------------------------------------------------
TRANSACTIONS = "transactions"
FRAUD_ALERTS = "fraud-alerts"
TRANSACTIONS_DLQ = "transactions-dlq"
FRAUD_LABELS = "fraud-labels"
FRAUD_RULES = "fraud-rules"
FRAUD_ALERTS_DLQ = "fraud-alerts-dlq"  # alerts the alert consumer could not store (poison messages)
FRAUD_LABELS_DLQ = "fraud-labels-dlq"  # labels the labels consumer could not store (poison messages)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int  # wanted replication; capped at the number of brokers
    config: dict[str, str]


TOPICS: tuple[TopicSpec, ...] = (
    # key = card_token, so every event of a card lands on one partition, in order
    TopicSpec(TRANSACTIONS, 6, 3, {"min.insync.replicas": "2"}),
    TopicSpec(FRAUD_ALERTS, 3, 3, {"min.insync.replicas": "2"}),
    TopicSpec(TRANSACTIONS_DLQ, 1, 3, {"min.insync.replicas": "2"}),
    TopicSpec(FRAUD_LABELS, 3, 3, {"min.insync.replicas": "2"}),
    TopicSpec(FRAUD_RULES, 1, 3, {"min.insync.replicas": "2", "cleanup.policy": "compact"}),
    TopicSpec(FRAUD_ALERTS_DLQ, 1, 3, {"min.insync.replicas": "2"}),
    TopicSpec(FRAUD_LABELS_DLQ, 1, 3, {"min.insync.replicas": "2"}),
)


def value_subject(topic: str) -> str:
    """Confluent TopicNameStrategy subject for a topic's values."""
    return f"{topic}-value"


# --- Ports ------------------------------------------------------------------------------------------------
# Host ports follow the original design: brokers on 9092-9094, the controller on 19093.
# The registry is not on its usual 8081 because Flink's web UI takes that port.
BROKER_PORTS = (9092, 9093, 9094)
CONTROLLER_PORT = 19093
REGISTRY_PORT = 8085
POSTGRES_PORT = 5433  # the private native cluster; 5432 is left to a system PostgreSQL
FLINK_UI_PORT = 8081
DASHBOARD_PORT = 5006  # the analysts' Panel dashboard
DAGSTER_PORT = 3070  # the Dagster UI (lakehouse); not 3000, which many dev servers take

# Banks that `rtfd up` starts producing by default.
DEFAULT_BANKS = ("bank-a", "bank-b")
FLINK_RPC_PORT = 6123  # JobManager RPC; the web UI / REST API is FLINK_UI_PORT
