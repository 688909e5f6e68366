"""Alerts are written in exactly the registered fraud_alert contract (Confluent wire format)."""

from __future__ import annotations

import io
import json

import fastavro
import pandas as pd

import schemas
from flink.alerts import AlertEncoder


def test_alert_bytes_decode_with_the_contract():
    frame = pd.DataFrame([{
        "alert_id": "a-1", "transaction_id": "t-1", "card_token": "ab" * 32, "customer_id": "C-1", "bank_id": "bank-a",
        "rules": ["velocity@2"], "score": 0.8, "severity": "HIGH", "reasons": ["16 transactions in 10 min"],
        "amount_minor": 1250, "currency": "EUR", "event_time": 1_741_000_000_000,
    }])
    value = AlertEncoder(7).encode_frame(frame, now_ms=1_741_000_000_500)[0]
    assert value[:5] == b"\x00\x00\x00\x00\x07"
    schema = fastavro.parse_schema(json.loads(schemas.fraud_alert_schema()))
    alert = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, schema)
    assert alert["severity"] == "HIGH" and alert["rules"] == ["velocity@2"] and alert["amount_minor"] == 1250
    assert int(alert["event_time"].timestamp() * 1000) == 1_741_000_000_000
    assert int(alert["detected_at"].timestamp() * 1000) == 1_741_000_000_500
