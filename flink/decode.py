"""Confluent-wire-format Avro transactions to validated rows: the contract, and its two implementations.

The job decodes in the JVM (`jvm_decoder`: io.rtfd.flink.DecodeTransaction, jvm/functions), so no Python runs
per transaction on the archive path. `Decoder` below is the reference it is held to, record by record
(tests/flink/test_decode.py, tests/fuzz/test_avro_decode.py), in pandas batches; the reference data the Java
function checks against (schemas, ISO codes, channels, limits) comes from this module, so the two cannot drift.

Bytes: magic byte 0, the writer schema id as 4 big-endian bytes, then the Avro binary body. Writer schemas
are fetched from the registry by id (cached) and resolved against the newest transaction schema (v2), so v1
and v2 writers both decode. Every problem becomes an `error` string naming it; the job routes those rows to
the dead-letter topic and never fails on bad input. Validation mirrors services.transactions (the producer
and replay rules) but runs vectorized over the batch.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import fastavro
import numpy as np
import pandas as pd
import pycountry
from fastavro.schema import to_parsing_canonical_form

import schemas
from services.transactions import CHANNELS, ID_FIELDS, MAX_EVENT_MS, MIN_EVENT_MS, looks_like_pan

log = logging.getLogger(__name__)

MAGIC = 0
HEADER = struct.Struct(">bI")

# Output columns of decode, in order; the Flink ROW type in flink.udfs lists the same names.
COLUMNS = (
    "transaction_id", "event_time_ms", "bank_id", "customer_id", "card_token", "merchant_id", "terminal_id",
    "mcc", "amount_minor", "currency", "channel", "country", "lat", "lon", "device_id", "schema_version",
    "error",
)
STRING_FIELDS = ("transaction_id", "bank_id", "customer_id", "card_token", "merchant_id", "terminal_id",
                 "mcc", "currency", "channel", "country", "device_id")

CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)
COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
MCC = re.compile(r"\d{4}")

# What a schema lookup returns: the writer schema's JSON text, or None when the registry does not know the id.
SchemaLookup = Callable[[int], str | None]


def jvm_decoder(registry_url: str):
    """The job's decode_transaction: a Java ScalarFunction (BYTES -> ROW of COLUMNS) with the reference data of
    this module. Needs the job's jars on the gateway's class path (flink.config.jvm_jars)."""
    from pyflink.java_gateway import get_gateway

    def java_list(values):
        out = get_gateway().jvm.java.util.ArrayList()
        for value in values:
            out.add(value)
        return out

    return get_gateway().jvm.io.rtfd.flink.DecodeTransaction(
        registry_url, java_list(schemas.transaction_schema(v) for v in schemas.TRANSACTION_VERSIONS),
        java_list(ID_FIELDS), java_list(sorted(CURRENCIES)), java_list(sorted(COUNTRIES)), java_list(CHANNELS),
        MIN_EVENT_MS, MAX_EVENT_MS)


class RegistryLookup:
    """GET <registry>/schemas/ids/<id>. 404 means unknown (None); other failures are retried with backoff
    and finally raised: a registry outage must stall the job (Flink restarts it), not dead-letter good data."""

    def __init__(self, registry_url: str, attempts: int = 6, timeout_s: float = 5.0):
        self.base = registry_url.rstrip("/")
        self.attempts = attempts
        self.timeout_s = timeout_s

    def __call__(self, schema_id: int) -> str | None:
        url = f"{self.base}/schemas/ids/{schema_id}"
        for attempt in range(self.attempts):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read())["schema"]
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                error: Exception = exc
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                error = exc
            log.warning("schema registry lookup of id %d failed (%s), attempt %d", schema_id, error, attempt + 1)
            time.sleep(min(0.2 * 2**attempt, 5.0))
        raise RuntimeError(f"schema registry {self.base} unreachable for schema id {schema_id}: {error}")


def _canonical(schema_text: str) -> str:
    return to_parsing_canonical_form(fastavro.parse_schema(json.loads(schema_text), _write_hint=False))


KNOWN_VERSIONS = {_canonical(schemas.transaction_schema(v)): v for v in schemas.TRANSACTION_VERSIONS}


class Decoder:
    """Caches writer schemas by id; unknown ids are remembered for `unknown_ttl_s` so garbage that happens
    to start with a zero byte does not turn into one registry request per record."""

    def __init__(self, lookup: SchemaLookup, unknown_ttl_s: float = 30.0):
        self.lookup = lookup
        self.reader = fastavro.parse_schema(json.loads(schemas.transaction_schema(schemas.LATEST_TRANSACTION_VERSION)))
        self.writers: dict[int, tuple[dict, int] | str] = {}  # id -> (parsed, version) | error text
        self.unknown: dict[int, float] = {}
        self.unknown_ttl_s = unknown_ttl_s

    def writer(self, schema_id: int) -> tuple[dict, int] | str:
        cached = self.writers.get(schema_id)
        if cached is not None:
            return cached
        seen = self.unknown.get(schema_id)
        if seen is not None and time.monotonic() - seen < self.unknown_ttl_s:
            return f"unknown schema id {schema_id}"
        text = self.lookup(schema_id)
        if text is None:
            self.unknown[schema_id] = time.monotonic()
            return f"unknown schema id {schema_id}"
        try:
            parsed = fastavro.parse_schema(json.loads(text))
            fields = {f["name"] for f in parsed.get("fields", ())} if isinstance(parsed, dict) else set()
            version = KNOWN_VERSIONS.get(_canonical(text), 2 if "device_id" in fields else 1)
            result: tuple[dict, int] | str = (parsed, version)
        except Exception as exc:  # a schema the registry holds but Avro cannot parse
            result = f"schema id {schema_id} is not a usable Avro schema: {exc}"
        self.writers[schema_id] = result
        return result

    def decode_one(self, value: bytes | None) -> tuple[dict | None, int, str | None]:
        """(record, schema version, error)."""
        if value is None:
            return None, 0, "empty value (null)"
        if len(value) < HEADER.size:
            return None, 0, f"truncated: {len(value)} bytes, shorter than the 5-byte Confluent header"
        magic, schema_id = HEADER.unpack_from(value)
        if magic != MAGIC:
            return None, 0, f"wrong magic byte {value[0]} (expected 0: not Confluent wire format)"
        writer = self.writer(schema_id)
        if isinstance(writer, str):
            return None, 0, writer
        parsed, version = writer
        body = io.BytesIO(value)
        body.seek(HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, parsed, self.reader)
        except (EOFError, StopIteration, IndexError, struct.error):
            return None, version, f"truncated or garbage Avro body for schema id {schema_id}"
        except Exception as exc:  # SchemaResolutionError, UnicodeDecodeError, bad enum index, ...
            kind = type(exc).__name__
            return None, version, f"cannot decode as transaction with schema id {schema_id}: {kind}: {exc}"
        if body.tell() != len(value):
            return None, version, f"garbage: {len(value) - body.tell()} trailing bytes after the Avro record"
        when = record.get("event_time")
        if hasattr(when, "timestamp"):  # fastavro turns timestamp-millis into an aware datetime
            record["event_time"] = round(when.timestamp() * 1000)
        return record, version, None

    def decode(self, values: pd.Series | list) -> pd.DataFrame:
        """One output row per input value, in order: the decoded fields, schema_version and error."""
        rows: list[dict] = []
        errors: list[str | None] = []
        versions: list[int] = []
        for value in values:
            record, version, error = self.decode_one(value)
            rows.append(record or {})
            errors.append(error)
            versions.append(version)
        frame = pd.DataFrame.from_records(rows, columns=schemas.transaction_fields())
        return finish(frame, versions, errors)


def finish(frame: pd.DataFrame, versions: list[int], errors: list[str | None]) -> pd.DataFrame:
    """Typed output columns plus the validation errors of the decoded rows."""
    n = len(frame)
    out = pd.DataFrame(index=range(n))
    for name in STRING_FIELDS:
        col = frame[name] if name in frame else pd.Series([None] * n)
        out[name] = col.astype(object).where(col.notna(), None).reset_index(drop=True)
    for name in ("currency", "country"):
        out[name] = out[name].map(lambda v: v.strip().upper() if isinstance(v, str) else v)
    out["event_time_ms"] = pd.to_numeric(frame.get("event_time", pd.Series([None] * n)), errors="coerce")
    out["amount_minor"] = pd.to_numeric(frame.get("amount_minor", pd.Series([None] * n)), errors="coerce")
    for name in ("lat", "lon"):
        out[name] = pd.to_numeric(frame.get(name, pd.Series([None] * n)), errors="coerce").astype("float64")
    out["schema_version"] = pd.Series(versions, dtype="int32")
    decoded_ok = pd.Series([e is None for e in errors])
    problems = validate(out)
    out["error"] = [e if e is not None else (p or None) for e, p in zip(errors, problems, strict=True)]
    out.loc[~decoded_ok, "event_time_ms"] = np.nan
    for name in ("event_time_ms", "amount_minor"):
        # plain Python ints/None: PyFlink's Arrow conversion rejects pandas' nullable Int64 dtype
        out[name] = pd.Series([None if pd.isna(v) else int(v) for v in out[name]], dtype=object)
    return out[list(COLUMNS)]


def validate(out: pd.DataFrame) -> list[str]:
    """Vectorized version of services.transactions' rules; one '; '-joined problem string per row ('' = ok)."""
    n = len(out)
    problems: list[list[str]] = [[] for _ in range(n)]

    def flag(mask: pd.Series | np.ndarray, message: Callable[[int], str]) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            problems[i].append(message(i))

    for name in ID_FIELDS:
        col = out[name]
        text = col.astype("string")
        blank = text.isna() | text.str.strip().eq("").fillna(True)
        flag(blank, lambda _i, name=name: f"{name}: required, must be non-empty")
        # the same rule as replay (services.transactions.looks_like_pan): a whole value that is a card number
        maybe = text.str.fullmatch(r"[\d\s-]{13,25}").fillna(False).astype(bool)
        if maybe.any():
            pan = maybe & text.map(lambda v: isinstance(v, str) and looks_like_pan(v)).astype(bool)
            flag(pan, lambda _i, name=name: f"{name}: looks like a card number; must carry card tokens, never PANs")
    t = out["event_time_ms"]
    flag(t.notna() & ((t < MIN_EVENT_MS) | (t >= MAX_EVENT_MS)),
         lambda i: f"event_time: out of range 2000..2100 (got {int(t.iloc[i])} ms)")
    a = out["amount_minor"]
    flag(a.notna() & (a <= 0), lambda i: f"amount_minor: must be > 0 (got {int(a.iloc[i])})")
    cur = out["currency"]
    flag(cur.notna() & ~cur.isin(CURRENCIES),
         lambda i: f"currency: must be ISO 4217 currency code (got {cur.iloc[i]!r})")
    cty = out["country"]
    flag(cty.notna() & ~cty.isin(COUNTRIES),
         lambda i: f"country: must be ISO 3166-1 alpha-2 country code (got {cty.iloc[i]!r})")
    ch = out["channel"]
    flag(ch.notna() & ~ch.isin(CHANNELS),
         lambda i: f"channel: must be one of {'/'.join(CHANNELS)} (got {ch.iloc[i]!r})")
    mcc = out["mcc"]
    flag(mcc.notna() & ~mcc.astype("string").str.fullmatch(MCC).fillna(False).astype(bool),
         lambda i: f"mcc: must be four digits (got {mcc.iloc[i]!r})")
    lat, lon = out["lat"], out["lon"]
    for name, col, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        bad = col.notna() & ~((col >= -limit) & (col <= limit))  # NaN from the wire fails the range test too
        flag(bad, lambda i, name=name, col=col, limit=limit:
             f"{name}: must be in [-{limit:g}, {limit:g}] (got {col.iloc[i]:g})")
    flag(lat.isna() != lon.isna(), lambda _i: "lat/lon: must be both null or both set")
    return ["; ".join(p) for p in problems]
