"""decode_transaction's logic on real Avro bytes: v1 and v2 writers, and every kind of bad record, in both
implementations: the job's Java function (io.rtfd.flink.DecodeTransaction, through the Py4J gateway) and the
Python reference (flink.decode.Decoder). Each test runs on both; test_jvm_decodes_like_the_reference compares
them row by row."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest

import schemas
from flink.decode import Decoder
from services.transactions import validate_transaction
from tests.decode_helpers import JvmDecoder, SchemaIds

pytestmark = pytest.mark.timeout(120)

IDS = {1: schemas.transaction_schema(1), 2: schemas.transaction_schema(2)}
EVENT_MS = 1_741_000_000_000


def record(**changes) -> dict:
    rec = {
        "transaction_id": "6f1c1f9e-0000-4000-8000-000000000001", "event_time": EVENT_MS, "bank_id": "bank-a",
        "customer_id": "C-bank-a-000001", "card_token": "ab" * 32, "merchant_id": "M-LON-00001",
        "terminal_id": "T-LON-00001", "mcc": "5411", "amount_minor": 1250, "currency": "GBP", "channel": "POS",
        "country": "GB", "lat": 51.5, "lon": -0.12,
    }
    rec.update(changes)
    return rec


def wire(version: int, rec: dict, schema_id: int | None = None) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, version if schema_id is None else schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(IDS[version])), rec)
    return out.getvalue()


@pytest.fixture(params=["jvm", "python"])
def decoder(request):
    if request.param == "jvm":
        with SchemaIds(IDS) as registry:
            d = JvmDecoder(registry.url)
            d.calls = registry.calls
            yield d
        return
    calls = []

    def lookup(schema_id):
        calls.append(schema_id)
        return IDS.get(schema_id)

    d = Decoder(lookup)
    d.calls = calls
    yield d


def test_v1_and_v2_writers_decode_to_one_row_type(decoder):
    out = decoder.decode([wire(1, record()), wire(2, record(device_id="dev-1", lat=None, lon=None, channel="ECOM"))])
    assert list(out["error"]) == [None, None]
    assert list(out["schema_version"]) == [1, 2]
    assert list(out["device_id"]) == [None, "dev-1"]
    assert list(out["event_time_ms"]) == [EVENT_MS, EVENT_MS]
    assert out["lat"].isna().tolist() == [False, True]
    assert out.loc[0, "amount_minor"] == 1250 and out.loc[0, "currency"] == "GBP"


def test_writer_schemas_are_fetched_once(decoder):
    decoder.decode([wire(1, record())] * 5 + [wire(2, record(device_id=None))] * 5)
    assert decoder.calls == [1, 2]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x01" + wire(1, record())[1:], "wrong magic byte 1"),
        (struct.pack(">bI", 0, 4242) + wire(1, record())[5:], "unknown schema id 4242"),
        (wire(1, record())[:25], "truncated or garbage Avro body"),
        (b"\x00\x00", "truncated: 2 bytes"),
        (wire(1, record()) + b"junk", "garbage: 4 trailing bytes"),
        (None, "empty value"),
        (wire(2, record(amount_minor=-5, device_id=None)), "amount_minor: must be > 0 (got -5)"),
        (wire(2, record(lat=91.0, device_id=None)), "lat: must be in [-90, 90] (got 91)"),
        (wire(2, record(lat=None, device_id=None)), "lat/lon: must be both null or both set"),
        (wire(2, record(currency="XXQ", device_id=None)), "currency: must be ISO 4217 currency code"),
        (wire(2, record(country="UK", device_id=None)), "country: must be ISO 3166-1 alpha-2"),
        (wire(2, record(customer_id=" ", device_id=None)), "customer_id: required, must be non-empty"),
        (wire(2, record(event_time=1_700_000_000, device_id=None)), "event_time: out of range"),
        (wire(2, record(mcc="54A1", device_id=None)), "mcc: must be four digits"),
        (wire(2, record(customer_id="4111111111111111", device_id=None)), "customer_id: looks like a card number"),
    ],
)
def test_bad_records_get_a_reason_and_never_raise(decoder, value, reason):
    out = decoder.decode([wire(1, record()), value])
    assert out.loc[0, "error"] is None
    assert reason in out.loc[1, "error"]


def test_unknown_ids_are_not_looked_up_again_at_once(decoder):
    bad = struct.pack(">bI", 0, 4242) + b"\x00" * 10
    decoder.decode([bad] * 20)
    assert decoder.calls == [4242]


def test_validation_agrees_with_the_producer_rules(decoder):
    """Same verdict as services.transactions on good and bad records."""
    cases = [record(), record(amount_minor=0), record(lon=200.0), record(channel="ATM", mcc="6011")]
    out = decoder.decode([wire(1, c) for c in cases])
    for case, error in zip(cases, out["error"], strict=True):
        assert (error is None) == (validate_transaction(case, 1) == [])


def test_card_tokens_with_luhn_valid_digit_runs_are_not_taken_for_card_numbers(decoder):
    token = "4111111111111111" + "ab" * 24  # 64 hex digits that happen to start with a Luhn-valid run
    out = decoder.decode([wire(1, record(card_token=token)), wire(1, record(card_token="4111111111111111"))])
    assert out.loc[0, "error"] is None
    assert "card_token: looks like a card number" in out.loc[1, "error"]


def test_jvm_decodes_like_the_reference():
    """Every case above and more, through both: the same fields, the same errors, word for word."""
    values = [wire(1, record()), wire(2, record(device_id="dev-9", channel="MOBILE", lat=None, lon=None)),
              wire(2, record(currency=" eur ", country="de", device_id=None)),
              wire(2, record(lat=1e-7, lon=123456789.0, mcc="x", channel="ATM", device_id=None)),
              wire(2, record(currency="it's", country='q"', amount_minor=0, device_id=None)),
              wire(2, record(transaction_id="4111-1111-1111-1111", bank_id="\u00a0", device_id=None)),
              b"\x07" * 12, struct.pack(">bI", 0, 4242) + b"\x00", None, b"", wire(1, record())[:-1]]
    with SchemaIds(IDS) as registry:
        jvm = JvmDecoder(registry.url).decode(values)
    python = Decoder(IDS.get).decode(values)
    assert jvm.to_dict("records") == python.astype(object).where(python.notna(), None).to_dict("records")
