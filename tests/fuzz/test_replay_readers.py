"""Fuzz the replay's file path (services/replay): arbitrary bytes and rows in CSV, JSON Lines and Parquet files
go through the readers and the row checks exactly as `rtfd replay` and `rtfd labels load` run them. Every
file either fails as a whole with a FileFormatError naming it, or yields rows that are valid or carry error
strings; nothing else may escape, and no card number may reach a reject line."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from services.replay.labels import LABEL_COLUMNS, normalize_label
from services.replay.readers import FileFormatError, read_rows
from services.replay.replay import transaction_columns
from services.transactions import contains_pan, normalize_transaction, redact_row

PAN = "4111111111111111"
TX_REQUIRED, TX_OPTIONAL, TX_NULLABLE = transaction_columns(2)
COLUMNS = [*TX_REQUIRED, *TX_OPTIONAL, *LABEL_COLUMNS, "extra"]

# cell values that hit the interesting paths: numbers, blanks, codes, timestamps, unicode, card numbers
cells = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["", " ", "EUR", "eur", "GB", "POS", "5411", "2025-03-01T10:00:00Z",
                                           "1741000000000", "true", "no", PAN, f"{PAN[:4]} {PAN[4:8]} {PAN[8:]}"]),
)
rows = st.lists(st.dictionaries(st.sampled_from(COLUMNS), cells, max_size=len(COLUMNS)), max_size=8)


def consume(path: Path) -> None:
    """What the loader does with a file, for both kinds of load, minus Kafka."""
    for required, optional, nullable, normalize in (
        (TX_REQUIRED, TX_OPTIONAL, TX_NULLABLE, lambda d: normalize_transaction(d, 2)),
        (LABEL_COLUMNS[:2], {"scenario"}, {"scenario"}, normalize_label),
    ):
        try:
            for row in read_rows(path, required, optional, nullable):
                assert row.line >= 1
                if row.data is None:
                    assert isinstance(row.error, str) and row.error
                    reject = {"line": row.line, "errors": [row.error], "row": {"raw": row.raw}}
                else:
                    record, errors = normalize(row.data)
                    assert all(isinstance(e, str) and e for e in errors)
                    reject = {"line": row.line, "errors": errors, "row": redact_row(row.data)}
                assert not contains_pan(json.dumps(reject["row"], default=str)), reject
        except FileFormatError as exc:
            assert str(path) in str(exc)


def in_file(suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        consume(path)


@given(st.binary(max_size=400), st.sampled_from([".csv", ".jsonl", ".parquet"]))
def test_arbitrary_bytes(data, suffix):
    in_file(suffix, data)


@given(rows, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_csv_rows(data, newline, bom):
    columns = sorted({k for r in data for k in r}) or ["transaction_id"]
    out = io.StringIO()
    out.write(",".join(columns) + newline)
    for r in data:
        out.write(",".join(_csv_cell(r.get(c)) for c in columns) + newline)
    in_file(".csv", (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8", "surrogatepass"))


def _csv_cell(value) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\r\n') else text


@given(st.lists(st.one_of(rows.map(lambda rs: rs[0] if rs else {}), st.lists(cells, max_size=3), cells,
                          st.text(max_size=20)), max_size=8))
def test_jsonl_values(values):
    lines = []
    for value in values:
        try:
            lines.append(json.dumps(value, allow_nan=True))
        except (TypeError, ValueError):
            lines.append(str(value))
    in_file(".jsonl", ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))


@given(rows)
def test_parquet_rows(data):
    columns = sorted({k for r in data for k in r}) or ["transaction_id"]
    # one Parquet column has one type: each column holds the text, numbers or bools its first value suggests
    table = {}
    for c in columns:
        values = [r.get(c) for r in data]
        kinds = {type(v) for v in values if v is not None}
        if kinds and kinds <= {int} and all(-(2**63) <= v < 2**63 for v in values if v is not None):
            table[c] = pa.array(values, pa.int64())
        elif kinds and kinds <= {float}:
            table[c] = pa.array(values, pa.float64())
        elif kinds and kinds <= {bool}:
            table[c] = pa.array(values, pa.bool_())
        else:
            table[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
    buffer = io.BytesIO()
    pq.write_table(pa.table(table) if data else pa.table({c: pa.array([], pa.string()) for c in columns}), buffer)
    in_file(".parquet", buffer.getvalue())
