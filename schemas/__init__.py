"""The contracts: Avro schemas (schemas/avro/*.avsc) and PostgreSQL migrations (schemas/postgres/*.sql).

The .avsc files are the single source of truth; code loads them through this module and never pastes a schema.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from rtfd import topology

AVRO_DIR = Path(__file__).parent / "avro"
POSTGRES_DIR = Path(__file__).parent / "postgres"

TRANSACTION_VERSIONS = (1, 2)
LATEST_TRANSACTION_VERSION = 2

# subject -> schema files, registered in this order by `rtfd up` (TopicNameStrategy)
REGISTERED: dict[str, tuple[str, ...]] = {
    topology.value_subject(topology.TRANSACTIONS): ("transaction-v1.avsc", "transaction-v2.avsc"),
    topology.value_subject(topology.FRAUD_ALERTS): ("fraud_alert-v1.avsc",),
    topology.value_subject(topology.FRAUD_LABELS): ("fraud_label-v1.avsc",),
}


@cache
def schema_text(filename: str) -> str:
    """The schema file's text, compacted to canonical-ish JSON (what the registry stores)."""
    return json.dumps(json.loads((AVRO_DIR / filename).read_text()), separators=(",", ":"))


def schema_dict(filename: str) -> dict:
    return json.loads(schema_text(filename))


def transaction_schema(version: int = LATEST_TRANSACTION_VERSION) -> str:
    if version not in TRANSACTION_VERSIONS:
        raise ValueError(f"unknown transaction schema version {version}; known: {TRANSACTION_VERSIONS}")
    return schema_text(f"transaction-v{version}.avsc")


def fraud_alert_schema() -> str:
    return schema_text("fraud_alert-v1.avsc")


def fraud_label_schema() -> str:
    return schema_text("fraud_label-v1.avsc")


def transaction_fields(version: int = LATEST_TRANSACTION_VERSION) -> list[str]:
    return [f["name"] for f in json.loads(transaction_schema(version))["fields"]]


def migrations() -> list[Path]:
    """PostgreSQL migrations in the order they apply (NNNN_name.sql)."""
    return sorted(POSTGRES_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
