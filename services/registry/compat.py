"""Avro schema parsing, the dedupe key and compatibility decisions; pure functions, no I/O.

The decisions are Apache Avro's own ReaderWriterCompatibilityChecker, applied per Confluent's levels:
BACKWARD means the new schema (reader) can read data written with an old one, FORWARD means an old reader
can read data written with the new one, FULL means both. Non-transitive levels compare with the latest
version only, *_TRANSITIVE ones with every live version.
"""

from __future__ import annotations

import hashlib
import json

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "BACKWARD"


class InvalidSchema(ValueError):
    """The text is not a valid Avro schema."""


def parse(text: str) -> avro.schema.Schema:
    try:
        return avro.schema.parse(text)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidSchema(str(exc) or type(exc).__name__) from exc


def canonical(text: str) -> str:
    """The dedupe key: the JSON without whitespace and with sorted keys.

    Not Avro's Parsing Canonical Form: that drops defaults, docs and logical types, so a schema and the
    same schema with a default added would share one id although they differ for compatibility.
    Object key order never carries meaning in Avro (field and symbol order live in arrays): sorting is safe.
    """
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except ValueError as exc:
        raise InvalidSchema(str(exc)) from exc


def fingerprint(text: str) -> str:
    """SHA-256 of the canonical form; indexed instead of the text, which can outgrow a btree entry."""
    return hashlib.sha256(canonical(text).encode()).hexdigest()


def is_level(level: object) -> bool:
    return isinstance(level, str) and level.upper() in LEVELS


def _can_read(reader: avro.schema.Schema, writer: avro.schema.Schema, what: str) -> list[str]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.name.upper() for i in result.incompatibilities})) or "INCOMPATIBLE"
    where = ", ".join(sorted(result.locations))
    detail = ", ".join(sorted(result.messages))
    return [f"{kinds} at {where} ({detail}): {what}"]


def incompatibilities(level: str, new: avro.schema.Schema, previous: list[tuple[int, avro.schema.Schema]]) -> list[str]:
    """Why `new` may not follow `previous` (live versions, oldest first) under `level`; empty if it may."""
    level = level.upper()
    if level == "NONE" or not previous:
        return []
    targets = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for version, old in targets:
        if base in ("BACKWARD", "FULL"):
            problems += _can_read(new, old, f"the new schema cannot read data written with version {version}")
        if base in ("FORWARD", "FULL"):
            problems += _can_read(old, new, f"version {version} cannot read data written with the new schema")
    return problems
