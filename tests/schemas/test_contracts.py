"""Each evolution step of the contracts is proven compatible with Apache Avro's own checker.

Like confluent-kafka's sr_demo, a deliberately bad v2 sits beside the real one, with why it is not compatible.
"""

from __future__ import annotations

import json

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

import schemas


def compatible(reader: str, writer: str) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(avro.schema.parse(reader), avro.schema.parse(writer))
    return result.compatibility is SchemaCompatibilityType.compatible


@pytest.mark.parametrize("filename", sorted(p.name for p in schemas.AVRO_DIR.glob("*.avsc")))
def test_every_contract_parses(filename):
    fastavro.parse_schema(schemas.schema_dict(filename))
    avro.schema.parse(schemas.schema_text(filename))


def test_transaction_v2_is_backward_compatible_with_v1():
    # BACKWARD: consumers on v2 read data written with v1 (device_id takes its default, null)
    assert compatible(reader=schemas.transaction_schema(2), writer=schemas.transaction_schema(1))
    # and v1 readers still read v2 data (the extra field is skipped), so the step is FULL in fact
    assert compatible(reader=schemas.transaction_schema(1), writer=schemas.transaction_schema(2))


def test_a_v2_without_a_default_would_not_be_backward_compatible():
    bad = json.loads(schemas.transaction_schema(2))
    bad["fields"][-1] = {"name": "device_id", "type": "string"}  # required, no default: v1 data has no value
    assert not compatible(reader=json.dumps(bad), writer=schemas.transaction_schema(1))


def test_transaction_fields_are_the_fixed_names():
    assert schemas.transaction_fields(1) == [
        "transaction_id", "event_time", "bank_id", "customer_id", "card_token", "merchant_id", "terminal_id",
        "mcc", "amount_minor", "currency", "channel", "country", "lat", "lon",
    ]  # fmt: skip
    assert schemas.transaction_fields(2) == [*schemas.transaction_fields(1), "device_id"]


def test_unknown_transaction_version_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown transaction schema version 3"):
        schemas.transaction_schema(3)
