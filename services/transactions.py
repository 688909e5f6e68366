"""Validation and normalisation of transaction records, shared by the simulator and the file replay.

`normalize_transaction` turns a loosely typed row (CSV strings, JSON values, Parquet cells) into the exact
record the Avro contract expects, or into a list of errors that each name the field and the problem.
Error messages echo bad values so a reject file is useful, except for anything that could be a card number.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pycountry

import schemas

CHANNELS = ("POS", "ECOM", "ATM", "MOBILE")
ID_FIELDS = ("transaction_id", "bank_id", "customer_id", "card_token", "merchant_id", "terminal_id")
OPTIONAL_FIELDS = frozenset({"lat", "lon", "device_id"})

# Plausible event times; an epoch given in seconds instead of millis lands in 1970 and is caught here.
MIN_EVENT_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_EVENT_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)

PAN_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
REDACTED = "<redacted: looks like a card number>"


def luhn_sum(digits: str) -> int:
    """The Luhn sum of a digit string: every second digit from the right doubled (less 9 when above 9)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total


def luhn_valid(digits: str) -> bool:
    """True when a digit string passes the Luhn check that every card number satisfies."""
    return digits.isdigit() and luhn_sum(digits) % 10 == 0


def contains_pan(text: str) -> bool:
    """True when text holds a 13-19 digit Luhn-valid run, i.e. something that may be a real card number."""
    return any(luhn_valid(m.group()) for m in PAN_RUN.finditer(text))


def looks_like_pan(value: str) -> bool:
    """True when the whole value (spaces and dashes aside) is a 13-19 digit Luhn-valid number: a card number
    where a token or id belongs. A 64-hex HMAC token may hold a long digit run by chance; that is no PAN."""
    digits = re.sub(r"[\s-]", "", value)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def is_blank(value: Any) -> bool:
    """Empty cells mean null: None, '' or whitespace, and NaN (how Parquet/pandas mark a missing float)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def parse_event_time(value: Any) -> int:
    """Event time to epoch millis (UTC). Accepts epoch millis (int or digit string), ISO-8601 with or without
    a zone (no zone means UTC), or a datetime. Raises ValueError with a message fit for a reject file."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp (got {value!r})")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, datetime):
        ms = _datetime_ms(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            ms = int(text)
        else:
            try:
                ms = _datetime_ms(datetime.fromisoformat(text))
            except ValueError:
                raise ValueError(f"not ISO-8601 or epoch millis (got {value!r})") from None
    else:
        raise ValueError(f"not ISO-8601 or epoch millis (got {value!r})")
    if not MIN_EVENT_MS <= ms < MAX_EVENT_MS:
        raise ValueError(f"out of range 2000..2100, epoch millis expected (got {value!r})")
    return ms


def _datetime_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.astimezone(UTC).timestamp() * 1000)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    raise ValueError


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError
    return number


def _known_currency(code: str) -> bool:
    return len(code) == 3 and pycountry.currencies.get(alpha_3=code) is not None


def _known_country(code: str) -> bool:
    return len(code) == 2 and pycountry.countries.get(alpha_2=code) is not None


def normalize_transaction(
    row: dict, version: int = schemas.LATEST_TRANSACTION_VERSION
) -> tuple[dict, list[str]]:
    """The Avro-ready record for `row` and the list of problems (empty = valid; the record is only
    meaningful then). Codes are upper-cased, empty cells become null, mcc given as a number is zero-padded."""
    fields = schemas.transaction_fields(version)
    allowed = set(fields) | {"device_id"}  # v1 files may carry an empty device_id column
    errors: list[str] = []
    unknown = sorted(set(row) - allowed)
    if unknown:
        errors.append(f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(f for f in fields if f not in row and f not in OPTIONAL_FIELDS)
    if missing:
        errors.append(f"missing field(s): {', '.join(missing)}")
    out: dict[str, Any] = {}

    for name in ID_FIELDS:
        value = row.get(name)
        if name in missing:
            continue
        if is_blank(value):
            errors.append(f"{name}: required, must be non-empty")
        elif not isinstance(value, str):
            errors.append(f"{name}: must be a string (got {type(value).__name__})")
        elif looks_like_pan(value):
            # never echo it: the value may be a real card number
            errors.append(f"{name}: looks like a card number; files must carry card tokens, never PANs")
        else:
            out[name] = value.strip()

    if "event_time" not in missing:
        if is_blank(row.get("event_time")):
            errors.append("event_time: required")
        else:
            try:
                out["event_time"] = parse_event_time(row["event_time"])
            except ValueError as exc:
                errors.append(f"event_time: {exc}")

    if "amount_minor" not in missing:
        value = row.get("amount_minor")
        try:
            amount = _as_int(value)
        except ValueError:
            errors.append(f"amount_minor: must be an integer in minor units (got {value!r})")
        else:
            if amount <= 0:
                errors.append(f"amount_minor: must be > 0 (got {amount})")
            out["amount_minor"] = amount

    _check_code(row, "currency", missing, errors, out, _known_currency, "ISO 4217 currency code")
    _check_code(row, "country", missing, errors, out, _known_country, "ISO 3166-1 alpha-2 country code")
    _check_code(row, "channel", missing, errors, out, CHANNELS.__contains__, f"one of {'/'.join(CHANNELS)}")

    if "mcc" not in missing:
        value = row.get("mcc")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9999:
            value = f"{value:04d}"
        if isinstance(value, str) and re.fullmatch(r"\d{4}", value.strip()):
            out["mcc"] = value.strip()
        else:
            errors.append(f"mcc: must be four digits (got {value!r})")

    _check_position(row, errors, out)

    device = row.get("device_id")
    if is_blank(device):
        device = None
    elif not isinstance(device, str):
        errors.append(f"device_id: must be a string (got {type(device).__name__})")
    elif version < 2:
        errors.append(f"device_id: not part of transaction schema v{version} (use schema version 2)")
    if version >= 2:
        out["device_id"] = device.strip() if isinstance(device, str) else None

    return {f: out.get(f) for f in fields}, errors


def _check_code(row, name, missing, errors, out, known, what) -> None:
    if name in missing:
        return
    value = row.get(name)
    code = value.strip().upper() if isinstance(value, str) else None
    if code and known(code):
        out[name] = code
    else:
        errors.append(f"{name}: must be {what} (got {value!r})")


def _check_position(row: dict, errors: list[str], out: dict) -> None:
    """lat/lon: both null (card not present) or both set and in range."""
    coords = {}
    for name, limit in (("lat", 90.0), ("lon", 180.0)):
        value = row.get(name)
        if is_blank(value):
            coords[name] = None
            continue
        try:
            number = _as_float(value)
        except (TypeError, ValueError):
            errors.append(f"{name}: must be a number (got {value!r})")
            continue
        if not -limit <= number <= limit:
            errors.append(f"{name}: must be in [-{limit:g}, {limit:g}] (got {number:g})")
            continue
        coords[name] = number
    if len(coords) == 2 and (coords["lat"] is None) != (coords["lon"] is None):
        errors.append("lat/lon: must be both null or both set")
    out.update(coords)


def validate_transaction(record: dict, version: int = schemas.LATEST_TRANSACTION_VERSION) -> list[str]:
    """Problems with `record` against transaction schema `version`; an empty list means valid."""
    return normalize_transaction(record, version)[1]


def mask_pans(text: str) -> str:
    """text with every Luhn-valid 13-19 digit run replaced, for raw lines that could not be parsed."""
    return PAN_RUN.sub(lambda m: "<redacted>" if luhn_valid(m.group()) else m.group(), text)


def redact_row(row: dict) -> dict:
    """A copy of row safe for a reject file or a log: anything that looks like a card number is masked."""
    return {k: REDACTED if isinstance(v, str) and contains_pan(v) else v for k, v in row.items()}
