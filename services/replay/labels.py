"""Load a file of fraud labels (transaction_id, is_fraud, scenario) into the fraud-labels topic."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

import schemas
from rtfd import topology
from rtfd.config import Settings
from services.producer.run import label_record
from services.replay.loader import LoadSummary, load_file
from services.transactions import is_blank, looks_like_pan

LABEL_COLUMNS = ["transaction_id", "is_fraud", "scenario"]
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError(f"must be true or false (got {value!r})")


def normalize_label(row: dict, source: str = "file") -> tuple[dict, list[str]]:
    """The Avro fraud_label record for a row, and its problems (empty = valid)."""
    errors: list[str] = []
    unknown = sorted(set(row) - set(LABEL_COLUMNS))
    if unknown:
        errors.append(f"unknown field(s): {', '.join(unknown)}")
    transaction_id = row.get("transaction_id")
    if is_blank(transaction_id) or not isinstance(transaction_id, str):
        errors.append("transaction_id: required, must be a non-empty string")
    elif looks_like_pan(transaction_id):
        errors.append("transaction_id: looks like a card number")
    is_fraud = None
    if is_blank(row.get("is_fraud")):
        errors.append("is_fraud: required")
    else:
        try:
            is_fraud = parse_bool(row["is_fraud"])
        except ValueError as exc:
            errors.append(f"is_fraud: {exc}")
    scenario = row.get("scenario")
    if is_blank(scenario):
        scenario = None
    elif not isinstance(scenario, str):
        errors.append(f"scenario: must be a string (got {scenario!r})")
    if errors:
        return {}, errors
    return label_record(transaction_id.strip(), scenario and scenario.strip(), source, is_fraud), []


def load_labels(
    settings: Settings,
    path: Path,
    rate: float | None = None,
    reject_file: Path | None = None,
    *,
    topic: str = topology.FRAUD_LABELS,
    registry: SchemaRegistryClient | None = None,
    keep_ids: bool = True,
    stop: threading.Event | None = None,
) -> LoadSummary:
    """Validate and send a label file (source="file"); `ids` are the labelled transaction ids."""
    return load_file(
        settings, path, required=LABEL_COLUMNS[:2], optional={"scenario"}, nullable={"scenario"},
        normalize=normalize_label, topic=topic, schema_str=schemas.fraud_label_schema(),
        key_field="transaction_id", id_field="transaction_id",
        rate=rate, reject_file=reject_file, registry=registry, keep_ids=keep_ids, stop=stop,
    )
