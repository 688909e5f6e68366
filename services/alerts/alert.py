"""One fraud alert as the consumer stores it, and the checks a decoded record must pass to become one.

A record that fails these checks is a poison message: the consumer dead-letters it instead of storing it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
STATUSES = ("open", "confirmed_fraud", "false_positive")
_TEXT_FIELDS = ("alert_id", "transaction_id", "card_token", "customer_id", "bank_id")


class InvalidAlert(ValueError):
    """The record is not a storable alert; the message says which field and why."""


@dataclass(frozen=True)
class Alert:
    alert_id: str
    transaction_id: str
    card_token: str
    customer_id: str
    bank_id: str
    rules: tuple[str, ...]
    score: float
    severity: str
    reasons: tuple[str, ...]
    amount_minor: int
    currency: str
    event_time: datetime
    detected_at: datetime
    kafka_partition: int | None = None
    kafka_offset: int | None = None

    @classmethod
    def from_record(cls, record: object, partition: int | None = None, offset: int | None = None) -> Alert:
        """Validate a decoded fraud_alert record (or a database row); raise InvalidAlert naming the problem."""
        if not isinstance(record, dict):
            raise InvalidAlert(f"expected a record, got {type(record).__name__}")
        for name in _TEXT_FIELDS:
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidAlert(f"missing or empty {name}")
        rules = _strings(record, "rules")
        if not rules:
            raise InvalidAlert("rules is empty: an alert names at least one rule")
        score = record.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) \
                or not 0.0 <= score <= 1.0:
            raise InvalidAlert(f"score must be a number in [0, 1], got {score!r}")
        severity = record.get("severity")
        if severity not in SEVERITIES:
            raise InvalidAlert(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        amount = record.get("amount_minor")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidAlert(f"amount_minor must be an integer, got {amount!r}")
        currency = record.get("currency")
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()):
            raise InvalidAlert(f"currency must be an ISO 4217 code, got {currency!r}")
        return cls(
            alert_id=record["alert_id"], transaction_id=record["transaction_id"], card_token=record["card_token"],
            customer_id=record["customer_id"], bank_id=record["bank_id"], rules=rules, score=float(score),
            severity=severity, reasons=_strings(record, "reasons"), amount_minor=amount, currency=currency,
            event_time=_timestamp(record, "event_time"), detected_at=_timestamp(record, "detected_at"),
            kafka_partition=partition, kafka_offset=offset,
        )  # fmt: skip

    def to_json(self) -> dict:
        """The webhook payload: the alert's contract fields, timestamps as ISO-8601 UTC."""
        out = asdict(self)
        del out["kafka_partition"], out["kafka_offset"]
        out["rules"], out["reasons"] = list(self.rules), list(self.reasons)
        out["event_time"] = iso(self.event_time)
        out["detected_at"] = iso(self.detected_at)
        return out


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="milliseconds") if value is not None else None


def _strings(record: dict, name: str) -> tuple[str, ...]:
    value = record.get(name)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidAlert(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


def _timestamp(record: dict, name: str) -> datetime:
    value = record.get(name)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidAlert(f"{name} has no time zone")
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # epoch millis, as in the Avro contract
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidAlert(f"{name} is out of range: {value!r}") from None
    raise InvalidAlert(f"{name} must be a timestamp, got {value!r}")
