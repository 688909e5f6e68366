"""Row readers for CSV, JSON Lines and Parquet files, with the column checks every loader needs.

Line numbers in reject files point at the file a person would open:
- CSV: the physical line where the record starts; the header is line 1, so data starts at line 2.
- JSON Lines: the physical line (blank lines count but are skipped).
- Parquet: the 1-based row number (Parquet has no lines and no header).
Empty cells (an empty CSV field, JSON null, a Parquet null) are all None.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from services.transactions import mask_pans

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class FileFormatError(ValueError):
    """The file cannot be loaded at all: unknown type, unreadable, or the wrong columns."""


@dataclass(frozen=True)
class Row:
    line: int
    data: dict | None  # None when the line could not be parsed; see error and raw
    error: str | None = None
    raw: str | None = None


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FileFormatError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                              f"expected one of {', '.join(sorted(FORMATS))}")
    return fmt


def check_columns(path: Path, columns: Iterable[str], required: Iterable[str], optional: Iterable[str] = ()):
    """Raise FileFormatError naming missing and unexpected columns, if any."""
    columns, required, optional = list(columns), list(required), set(optional)
    missing = [c for c in required if c not in columns]
    extra = [c for c in columns if c not in required and c not in optional]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column(s): {', '.join(extra)}")
    if duplicated:
        problems.append(f"duplicated column(s): {', '.join(duplicated)}")
    if problems:
        expected = ", ".join(required) + (f" (optional: {', '.join(sorted(optional))})" if optional else "")
        raise FileFormatError(f"{path}: {'; '.join(problems)}; expected columns: {expected}")


def read_rows(path: Path, required: Iterable[str], optional: Iterable[str] = (),
              nullable: Iterable[str] = ()) -> Iterator[Row]:
    """Rows of a CSV, JSONL or Parquet file after checking its columns (before the first row is yielded).
    `nullable` columns may be left out of a JSON object, as JSON writers often drop null keys."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file")
    if fmt == "jsonl":
        rows = _jsonl_rows(path, list(required), set(optional) | set(nullable))
    else:
        rows = {"csv": _csv_rows, "parquet": _parquet_rows}[fmt](path, list(required), set(optional))
    # Run the generator to its column check now, so a bad file fails before anything is sent.
    first = next(rows, None)
    return _chain(first, rows)


def _chain(first: Row | None, rest: Iterator[Row]) -> Iterator[Row]:
    if first is not None:
        yield first
        yield from rest


def _csv_rows(path: Path, required: list[str], optional: set[str]) -> Iterator[Row]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets add a BOM
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{path}: empty file, expected a header line") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{path}: not a readable CSV file ({exc})") from None
        header = [h.strip() for h in header]
        check_columns(path, header, required, optional)
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield Row(start, None, f"unreadable CSV record: {exc}")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not cells:  # blank line
                continue
            if len(cells) != len(header):
                yield Row(line, None, f"expected {len(header)} cells, got {len(cells)}", mask_pans(",".join(cells)))
                continue
            yield Row(line, {h: (c if c.strip() else None) for h, c in zip(header, cells, strict=True)})


def _jsonl_rows(path: Path, required: list[str], omissible: set[str]) -> Iterator[Row]:
    checked = False
    # surrogateescape: a line that is not UTF-8 becomes that line's error instead of ending the whole load
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line_no, text in enumerate(f, start=1):
            if not _is_utf8(text):
                if not checked and line_no == 1:
                    raise FileFormatError(f"{path}: line 1 is not UTF-8 text; not a JSON Lines file")
                shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").strip()
                yield Row(line_no, None, "not UTF-8 text", mask_pans(shown))
                continue
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                if not checked and line_no == 1:
                    raise FileFormatError(f"{path}: line 1 is not JSON ({exc.msg}); not a JSON Lines file") from None
                yield Row(line_no, None, f"invalid JSON: {exc.msg}", mask_pans(text.strip()))
                continue
            if not isinstance(data, dict):
                yield Row(line_no, None, f"expected a JSON object, got {type(data).__name__}", mask_pans(text.strip()))
                continue
            if not checked:
                # the first object stands for the file's columns; later objects are checked row by row
                present = list(data) + [k for k in required if k in omissible and k not in data]
                check_columns(path, present, required, omissible)
                checked = True
            yield Row(line_no, data)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parquet_rows(path: Path, required: list[str], optional: set[str]) -> Iterator[Row]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(f"{path}: not a readable Parquet file ({exc})") from None
    check_columns(path, parquet.schema_arrow.names, required, optional)
    line = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for data in batch.to_pylist():
            line += 1
            yield Row(line, data)
