"""One fraud label as the consumer stores it, and the checks a decoded fraud_label record must pass to become one.

A record that fails them is a poison message: the consumer dead-letters it instead of storing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.transactions import looks_like_pan

# A label dated in the future would win over every later correction (the newer labelled_at wins), so it is refused;
# the tolerance allows for producers whose clocks run a little ahead.
FUTURE_TOLERANCE = timedelta(minutes=10)


class InvalidLabel(ValueError):
    """The record is not a storable label; the message says which field and why."""


@dataclass(frozen=True)
class FraudLabel:
    transaction_id: str
    is_fraud: bool
    scenario: str | None
    labelled_at: datetime
    source: str

    @classmethod
    def from_record(cls, record: object, now: datetime | None = None) -> FraudLabel:
        """Validate a decoded fraud_label record (schemas/avro/fraud_label-v1.avsc); raise InvalidLabel naming the
        problem. labelled_at may be a timezone-aware datetime or epoch milliseconds, as in the contract."""
        if not isinstance(record, dict):
            raise InvalidLabel(f"expected a record, got {type(record).__name__}")
        transaction_id = record.get("transaction_id")
        if not isinstance(transaction_id, str) or not transaction_id.strip():
            raise InvalidLabel("missing or empty transaction_id")
        if looks_like_pan(transaction_id):  # card numbers never leave the producer; do not store one here either
            raise InvalidLabel("transaction_id looks like a card number")
        is_fraud = record.get("is_fraud")
        if not isinstance(is_fraud, bool):
            raise InvalidLabel(f"is_fraud must be true or false, got {is_fraud!r}")
        scenario = record.get("scenario")
        if scenario is not None and not isinstance(scenario, str):
            raise InvalidLabel(f"scenario must be a string or null, got {scenario!r}")
        source = record.get("source")
        if not isinstance(source, str) or not source.strip():
            raise InvalidLabel("missing or empty source")
        labelled_at = _timestamp(record.get("labelled_at"))
        if labelled_at > (now or datetime.now(UTC)) + FUTURE_TOLERANCE:
            raise InvalidLabel(f"labelled_at is in the future: {labelled_at.isoformat()}")
        return cls(transaction_id=transaction_id, is_fraud=is_fraud, scenario=scenario or None,
                   labelled_at=labelled_at, source=source)  # fmt: skip


def _timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidLabel("labelled_at has no time zone")
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # epoch millis
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidLabel(f"labelled_at is out of range: {value!r}") from None
    raise InvalidLabel(f"labelled_at must be a timestamp, got {value!r}")
