"""Fuzz the Flink job's Avro decoding path: arbitrary bytes, wrong magic bytes, unknown or unusable schema ids,
truncated and garbage Avro bodies, and well-formed records with values out of every range. The job's Java
function (io.rtfd.flink.DecodeTransaction) and the Python reference (flink/decode.py Decoder) must answer one row
per input with either a valid record or an error string, never raise (an exception there would fail the job
instead of dead-lettering one record), and agree: the same records valid, with the same fields."""

from __future__ import annotations

import atexit
import io
import json
import struct

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from flink.decode import COLUMNS, Decoder
from tests.decode_helpers import JvmDecoder, SchemaIds

pytestmark = pytest.mark.timeout(600)

# the registry as the decoder sees it: ids 1 and 2 are the contract versions, 3 holds a schema that is JSON
# but not Avro, 4 one that is no JSON, 5 the fraud alert (a valid schema of the wrong record); others unknown
REGISTRY = {1: schemas.transaction_schema(1), 2: schemas.transaction_schema(2), 3: '{"type": "nonsense"}',
            4: "not json {", 5: schemas.fraud_alert_schema()}
PARSED = {v: fastavro.parse_schema(json.loads(REGISTRY[v])) for v in (1, 2)}
# decode() builds and validates a pandas frame per call (~0.1 s on a busy 2-core machine): fewer examples
# per test than the profile's, several records per example
bounded = settings(max_examples=max(10, settings.default.max_examples // 4))


def decoder() -> Decoder:
    return Decoder(REGISTRY.get)


_jvm: list[JvmDecoder] = []


def jvm_decoder() -> JvmDecoder:
    """One for the module (its schema cache persists, as in the job); its registry stops at exit."""
    if not _jvm:
        registry = SchemaIds(REGISTRY).__enter__()
        atexit.register(registry.__exit__)
        _jvm.append(JvmDecoder(registry.url))
    return _jvm[0]


def header(schema_id: int, magic: int = 0) -> bytes:
    return struct.pack(">bI", magic, schema_id)


strings = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "EUR", "xx", "GB", "POS", "5411",
                                                            "4111111111111111", "4111 1111 1111 1111"]))
numbers = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([0, -1, 2**62]))
floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def records(draw, version: int) -> dict:
    """Any values the writer schema's types allow, which covers every out-of-range value of the contract."""
    out = {}
    for field in PARSED[version]["fields"]:
        kind = field["type"]
        types = kind if isinstance(kind, list) else [kind]
        names = {t if isinstance(t, str) else t.get("logicalType") or t.get("type") for t in types}
        enums = [t for t in types if isinstance(t, dict) and t.get("type") == "enum"]
        if "null" in names and draw(st.booleans()):
            out[field["name"]] = None
        elif enums:
            out[field["name"]] = draw(st.sampled_from(enums[0]["symbols"]))  # bad indexes: the binary fuzzers
        elif "timestamp-millis" in names or "long" in names:
            out[field["name"]] = draw(st.integers(min_value=-(2**62), max_value=2**62))
        elif "int" in names:
            out[field["name"]] = draw(st.integers(min_value=-(2**31), max_value=2**31 - 1))
        elif "double" in names or "float" in names:
            out[field["name"]] = draw(floats)
        else:
            out[field["name"]] = draw(strings)
    return out


def encode(version: int, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(header(version))
    fastavro.schemaless_writer(out, PARSED[version], record)
    return out.getvalue()


def check(values: list) -> None:
    frame = decoder().decode(values)
    jvm = jvm_decoder().decode(values)
    assert list(frame.columns) == list(COLUMNS) == list(jvm.columns)
    assert len(frame) == len(values) == len(jvm)
    for (_, row), (_, other) in zip(frame.iterrows(), jvm.iterrows(), strict=True):
        error = row["error"]
        assert error is None or (isinstance(error, str) and error), error
        assert (other["error"] is None) == (error is None), (error, other["error"])
        if error is None:
            assert row["schema_version"] in (1, 2)
            assert isinstance(row["transaction_id"], str) and row["transaction_id"].strip()
            assert {k: None if v != v else v for k, v in row.items()} == other.to_dict()  # NaN: a null in Java


@bounded
@given(st.lists(st.one_of(st.none(), st.binary(max_size=64)), max_size=6))
def test_arbitrary_values(values):
    check(values)


@bounded
@given(st.integers(min_value=-128, max_value=127), st.integers(min_value=0, max_value=2**32 - 1),
       st.binary(max_size=80))
def test_any_header_and_body(magic, schema_id, body):
    check([struct.pack(">bI", magic, schema_id) + body])


@bounded
@given(st.sampled_from([1, 2]), st.data())
def test_truncated_and_extended_records(version, data):
    wire = encode(version, data.draw(records(version)))
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)))
    tail = data.draw(st.binary(max_size=8))
    check([wire[:cut], wire + tail, wire[:cut] + tail])


@bounded
@given(st.sampled_from([1, 2]), st.data())
def test_records_with_any_values(version, data):
    check([encode(version, data.draw(records(version))) for _ in range(data.draw(st.integers(1, 4)))])


@bounded
@given(st.sampled_from([3, 4, 5]), st.binary(max_size=60))
def test_unusable_schemas(schema_id, body):
    check([header(schema_id) + body])
