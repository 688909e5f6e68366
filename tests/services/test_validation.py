"""Record validation shared by the producer and the replay: every error names its field and problem."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.replay.labels import normalize_label
from services.transactions import (
    contains_pan,
    mask_pans,
    normalize_transaction,
    parse_event_time,
    redact_row,
    validate_transaction,
)

MS = int(datetime(2025, 3, 3, 12, 30, tzinfo=UTC).timestamp() * 1000)
PAN = "4111111111111111"  # the classic Luhn-valid test card number


def good(**changes) -> dict:
    row = {
        "transaction_id": "6f1c1f9e-0000-4000-8000-000000000001",
        "event_time": "2025-03-03T12:30:00Z",
        "bank_id": "bank-a",
        "customer_id": "C-bank-a-000001",
        "card_token": "ab" * 32,
        "merchant_id": "M-LON-00001",
        "terminal_id": "T-LON-00001",
        "mcc": "5411",
        "amount_minor": "1250",
        "currency": "GBP",
        "channel": "POS",
        "country": "GB",
        "lat": "51.5",
        "lon": "-0.12",
        "device_id": None,
    }
    row.update(changes)
    return row


def test_valid_row_normalizes_to_the_avro_record():
    record, errors = normalize_transaction(good(currency="gbp", channel="pos", mcc=742), 2)
    assert errors == []
    assert record["event_time"] == MS and record["amount_minor"] == 1250
    assert (record["currency"], record["channel"], record["mcc"]) == ("GBP", "POS", "0742")
    assert record["lat"] == 51.5 and record["device_id"] is None
    v1, errors = normalize_transaction(good(), 1)
    assert errors == [] and "device_id" not in v1


@pytest.mark.parametrize(
    "value",
    ["2025-03-03T12:30:00Z", "2025-03-03T12:30:00", "2025-03-03 13:30:00+01:00", "2025-03-03T07:30:00-05:00",
     MS, str(MS), datetime(2025, 3, 3, 12, 30)],
)
def test_event_time_forms(value):
    assert parse_event_time(value) == MS


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"event_time": "yesterday"}, "event_time: not ISO-8601 or epoch millis (got 'yesterday')"),
        ({"event_time": "1740997800"}, "event_time: out of range 2000..2100, epoch millis expected"),
        ({"event_time": None}, "event_time: required"),
        ({"amount_minor": "-5"}, "amount_minor: must be > 0 (got -5)"),
        ({"amount_minor": 0}, "amount_minor: must be > 0 (got 0)"),
        ({"amount_minor": "12.50"}, "amount_minor: must be an integer in minor units (got '12.50')"),
        ({"channel": "CHEQUE"}, "channel: must be one of POS/ECOM/ATM/MOBILE (got 'CHEQUE')"),
        ({"transaction_id": ""}, "transaction_id: required, must be non-empty"),
        ({"customer_id": None}, "customer_id: required, must be non-empty"),
        ({"currency": "XXQ"}, "currency: must be ISO 4217 currency code (got 'XXQ')"),
        ({"country": "UK"}, "country: must be ISO 3166-1 alpha-2 country code (got 'UK')"),
        ({"lat": "91"}, "lat: must be in [-90, 90] (got 91)"),
        ({"lon": "-180.5"}, "lon: must be in [-180, 180] (got -180.5)"),
        ({"lat": "north"}, "lat: must be a number (got 'north')"),
        ({"lon": None}, "lat/lon: must be both null or both set"),
        ({"mcc": "54111"}, "mcc: must be four digits (got '54111')"),
        ({"extra": 1, "another": 2}, "unknown field(s): another, extra"),
    ],
)
def test_errors_name_field_and_problem(changes, expected):
    errors = validate_transaction(good(**changes), 2)
    assert any(e.startswith(expected) for e in errors), errors
    assert len(errors) == 1, errors


def test_missing_columns_are_named():
    row = good()
    del row["transaction_id"], row["currency"]
    assert validate_transaction(row, 2) == ["missing field(s): currency, transaction_id"]
    row = good()
    del row["lat"], row["lon"], row["device_id"]  # nullable: may be left out
    assert validate_transaction(row, 2) == []


def test_device_id_only_in_v2():
    assert validate_transaction(good(device_id="dev-1"), 2) == []
    assert validate_transaction(good(device_id="dev-1"), 1) == [
        "device_id: not part of transaction schema v1 (use schema version 2)"
    ]


def test_card_numbers_are_rejected_without_being_echoed():
    errors = validate_transaction(good(card_token=PAN), 2)
    assert errors == ["card_token: looks like a card number; files must carry card tokens, never PANs"]
    assert PAN not in redact_row(good(card_token=PAN)).values()
    assert contains_pan(f"x{PAN}y") and not contains_pan("4111111111111112")
    assert PAN not in mask_pans(f'{{"card_token": "{PAN}"}}')


def test_label_rows():
    record, errors = normalize_label({"transaction_id": "t1", "is_fraud": "TRUE", "scenario": "card_testing"})
    assert errors == [] and record["is_fraud"] is True and record["source"] == "file"
    record, errors = normalize_label({"transaction_id": "t2", "is_fraud": 0, "scenario": None})
    assert errors == [] and record["is_fraud"] is False and record["scenario"] is None
    _, errors = normalize_label({"transaction_id": "", "is_fraud": "maybe", "x": 1})
    assert errors == ["unknown field(s): x", "transaction_id: required, must be a non-empty string",
                      "is_fraud: must be true or false (got 'maybe')"]
