"""Register the contracts (schemas/avro/*.avsc) with the schema registry under TopicNameStrategy subjects."""

from __future__ import annotations

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

import schemas


def register_all(registry_conf: dict) -> dict[str, list[int]]:
    """Register every contract version in order (idempotent); return subject -> schema ids."""
    client = SchemaRegistryClient(registry_conf)
    ids: dict[str, list[int]] = {}
    for subject, files in schemas.REGISTERED.items():
        ids[subject] = [client.register_schema(subject, Schema(schemas.schema_text(f), "AVRO")) for f in files]
    return ids
