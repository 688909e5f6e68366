"""The fraud label checks (pure) and the label store's upsert rule against the stack's real PostgreSQL.

Every test uses transaction ids of its own, so tests never see each other's rows in the shared table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.kafka_sink import connect
from services.labels import store
from services.labels.label import FraudLabel, InvalidLabel

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def record(**overrides) -> dict:
    rec = {"transaction_id": "tx-1", "is_fraud": True, "scenario": "card_testing", "labelled_at": NOW,
           "source": "chargeback"}  # fmt: skip
    rec.update(overrides)
    return rec


# --- validation (pure) -------------------------------------------------------------------------------------------
def test_a_valid_record_becomes_a_label_with_an_aware_timestamp():
    label = FraudLabel.from_record(record(labelled_at=int(NOW.timestamp() * 1000)), now=NOW)
    assert label == FraudLabel("tx-1", True, "card_testing", NOW, "chargeback")
    assert FraudLabel.from_record(record(scenario=None, is_fraud=False), now=NOW).scenario is None


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"transaction_id": "  "}, "missing or empty transaction_id"),
        ({"transaction_id": None}, "missing or empty transaction_id"),
        ({"transaction_id": "4111 1111 1111 1111"}, "transaction_id looks like a card number"),
        ({"is_fraud": "yes"}, "is_fraud must be true or false, got 'yes'"),
        ({"is_fraud": 1}, "is_fraud must be true or false, got 1"),
        ({"scenario": 7}, "scenario must be a string or null, got 7"),
        ({"source": ""}, "missing or empty source"),
        ({"labelled_at": "yesterday"}, "labelled_at must be a timestamp, got 'yesterday'"),
        ({"labelled_at": datetime(2026, 1, 1)}, "labelled_at has no time zone"),
        ({"labelled_at": NOW + timedelta(days=1)}, "labelled_at is in the future: 2026-11-29T12:00:00+00:00"),
    ],
)
def test_a_bad_label_is_refused_naming_the_problem(overrides, problem):
    with pytest.raises(InvalidLabel) as exc:
        FraudLabel.from_record(record(**overrides), now=NOW)
    assert str(exc.value) == problem


def test_a_record_that_is_not_a_record_is_refused():
    with pytest.raises(InvalidLabel, match="expected a record, got list"):
        FraudLabel.from_record([1, 2], now=NOW)


# --- the upsert rule (real PostgreSQL) -----------------------------------------------------------------------------
@pytest.fixture
def conn(stack):
    with connect(stack.postgres_dsn) as c:
        yield c


def label(tx: str, at: datetime, is_fraud: bool = True, source: str = "simulator", scenario: str | None = "x"):
    return FraudLabel(tx, is_fraud, scenario, at, source)


@pytest.mark.stack
def test_newer_replaces_older_never_the_reverse_and_a_redelivery_changes_nothing(conn):
    tx = f"lbl-{uuid.uuid4().hex[:10]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    assert store.upsert_labels(conn, [label(tx, t0)]) == [tx]
    first = store.get_label(conn, tx)
    assert (first["is_fraud"], first["labelled_at"], first["source"]) == (True, t0, "simulator")

    assert store.upsert_labels(conn, [label(tx, t0)]) == []  # redelivered: nothing changes, not even received_at
    assert store.get_label(conn, tx) == first

    later = t0 + timedelta(minutes=30)
    assert store.upsert_labels(conn, [label(tx, later, is_fraud=False, source="chargeback", scenario=None)]) == [tx]
    replaced = store.get_label(conn, tx)
    assert (replaced["is_fraud"], replaced["scenario"], replaced["source"]) == (False, None, "chargeback")
    assert replaced["labelled_at"] == later and replaced["received_at"] >= first["received_at"]

    assert store.upsert_labels(conn, [label(tx, t0, source="late-stale")]) == []  # older: ignored
    assert store.get_label(conn, tx) == replaced

    # the same labelled_at with another verdict (an analyst correcting a label at the same instant): last wins
    assert store.upsert_labels(conn, [label(tx, later, is_fraud=True, source="analyst")]) == [tx]
    assert store.get_label(conn, tx)["source"] == "analyst"


@pytest.mark.stack
def test_a_batch_keeps_the_newest_label_per_transaction_whatever_its_order(conn):
    a, b = f"lbl-{uuid.uuid4().hex[:10]}", f"lbl-{uuid.uuid4().hex[:10]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    batch = [label(a, t0 + timedelta(minutes=5), source="newest"), label(a, t0, source="old"), label(b, t0)]
    assert sorted(store.upsert_labels(conn, batch)) == sorted([a, b])
    assert store.get_label(conn, a)["source"] == "newest"
    assert store.get_label(conn, f"lbl-missing-{uuid.uuid4().hex}") is None
    assert store.upsert_labels(conn, []) == []
    counts = store.count_labels(conn)
    assert counts["total"] == counts["fraud"] + counts["legit"] >= 2
