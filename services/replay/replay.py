"""Replay a file of transactions into Kafka, keeping each row's event_time (see loader for the mechanics).

Files carry card tokens, never card numbers: a card_token (or any id) that looks like a PAN is rejected
and masked in the reject file.
"""

from __future__ import annotations

import threading
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

import schemas
from rtfd import topology
from rtfd.config import Settings
from services.replay.loader import LoadSummary, load_file
from services.transactions import normalize_transaction


def transaction_columns(version: int) -> tuple[list[str], set[str], set[str]]:
    """(required, optional, nullable) columns of a transaction file for schema `version`."""
    required = [f for f in schemas.transaction_fields(version) if f != "device_id"]
    return required, {"device_id"}, {"lat", "lon", "device_id"}


def replay_file(
    settings: Settings,
    path: Path,
    rate: float | None = None,
    reject_file: Path | None = None,
    schema_version: int = schemas.LATEST_TRANSACTION_VERSION,
    *,
    topic: str = topology.TRANSACTIONS,
    registry: SchemaRegistryClient | None = None,
    keep_ids: bool = True,
    stop: threading.Event | None = None,
) -> LoadSummary:
    """Validate and send every row of a CSV/JSONL/Parquet transaction file; `ids` are transaction ids."""
    required, optional, nullable = transaction_columns(schema_version)
    return load_file(
        settings, path, required=required, optional=optional, nullable=nullable,
        normalize=lambda row: normalize_transaction(row, schema_version),
        topic=topic, schema_str=schemas.transaction_schema(schema_version),
        key_field="card_token", id_field="transaction_id",
        rate=rate, reject_file=reject_file, registry=registry, keep_ids=keep_ids, stop=stop,
    )
