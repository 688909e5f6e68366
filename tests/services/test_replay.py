"""File replay and label loading: readers on local files, then the full path into the real stack."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from services.producer.simulator import Simulator
from services.replay.labels import load_labels
from services.replay.readers import FileFormatError, read_rows
from services.replay.replay import replay_file, transaction_columns
from tests.kafka_helpers import consume_all, create_topic

FIELDS = schemas.transaction_fields(2)
REQUIRED, OPTIONAL, NULLABLE = transaction_columns(2)


def sample_records(n: int, seed: int = 5) -> list[dict]:
    sim = Simulator("bank-r", b"replay-test-key", seed=seed, customers=50)
    return [sim.next_event().record for _ in range(n)]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def write_csv(path, rows: list[dict], header=FIELDS):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def write_jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path, rows: list[dict]):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# --- readers (no servers) -----------------------------------------------------------------------------------
def test_csv_rows_count_the_header_as_line_one(tmp_path):
    records = sample_records(3)
    path = write_csv(tmp_path / "t.csv", records)
    path.write_text(path.read_text() + "\n")  # a trailing blank line is skipped
    rows = list(read_rows(path, REQUIRED, OPTIONAL, NULLABLE))
    assert [r.line for r in rows] == [2, 3, 4]
    assert rows[0].data["transaction_id"] == records[0]["transaction_id"]
    pos = next(r.data for r in rows if r.data["channel"] in ("ECOM", "MOBILE"))
    assert pos["lat"] is None and pos["lon"] is None  # empty cell = null


def test_jsonl_rows_and_unparsable_lines(tmp_path):
    records = sample_records(2)
    for r in records:
        r.pop("lat"), r.pop("lon")  # JSON writers often leave out null keys
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(records[0]) + "\n\n{broken\n[1, 2]\n" + json.dumps(records[1]) + "\n")
    rows = list(read_rows(path, REQUIRED, OPTIONAL, NULLABLE))
    assert [(r.line, r.error is None) for r in rows] == [(1, True), (3, False), (4, False), (5, True)]
    assert rows[1].error.startswith("invalid JSON") and rows[2].error == "expected a JSON object, got list"


def test_parquet_rows_are_numbered_from_one(tmp_path):
    records = sample_records(4)
    rows = list(read_rows(write_parquet(tmp_path / "t.parquet", records), REQUIRED, OPTIONAL, NULLABLE))
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert [r.data for r in rows] == records


@pytest.mark.parametrize("writer", [write_csv, write_parquet, write_jsonl])
def test_wrong_columns_are_named(tmp_path, writer):
    rows = [{**{k: v for k, v in r.items() if k != "mcc"}, "colour": "red"} for r in sample_records(2)]
    suffix = {write_csv: ".csv", write_parquet: ".parquet", write_jsonl: ".jsonl"}[writer]
    path = tmp_path / f"t{suffix}"
    if writer is write_csv:
        write_csv(path, rows, header=[f for f in FIELDS if f != "mcc"] + ["colour"])
    else:
        writer(path, rows)
    with pytest.raises(FileFormatError, match=r"missing column\(s\): mcc; unexpected column\(s\): colour"):
        read_rows(path, REQUIRED, OPTIONAL, NULLABLE)


def test_wrong_file_type(tmp_path):
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(FileFormatError, match="unsupported file type '.xlsx'"):
        read_rows(tmp_path / "t.xlsx", REQUIRED)
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(FileFormatError, match="not a readable Parquet file"):
        read_rows(tmp_path / "t.parquet", REQUIRED)


# --- into the stack -----------------------------------------------------------------------------------------
@pytest.mark.stack
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_good_file_fully_delivered(stack, unique_topic, tmp_path, fmt):
    topic = create_topic(stack, unique_topic)
    records = sample_records(50)
    path = tmp_path / f"good.{fmt}"
    if fmt == "csv":
        write_csv(path, [{**r, "event_time": iso(r["event_time"])} for r in records])
    elif fmt == "jsonl":
        write_jsonl(path, records)  # epoch millis
    else:
        write_parquet(path, records)
    summary = replay_file(stack, path, rate=500, topic=topic)
    assert (summary.read, summary.sent, summary.rejected, summary.failed) == (50, 50, 0, 0)
    back = {v["transaction_id"]: v for _, v in consume_all(stack, topic, 50)}
    assert set(back) == {r["transaction_id"] for r in records}
    for r in records:  # event_time kept from the file
        assert back[r["transaction_id"]]["event_time"] == datetime.fromtimestamp(r["event_time"] / 1000, tz=UTC)


@pytest.mark.stack
def test_malformed_rows_rejected_with_line_and_reason(stack, unique_topic, tmp_path):
    topic = create_topic(stack, unique_topic)
    records = sample_records(12)
    rows = [{**r, "event_time": iso(r["event_time"])} for r in records]
    bad = {
        3: ("event_time", "31/02/2025 25:00", "event_time: not ISO-8601 or epoch millis"),
        5: ("amount_minor", -5, "amount_minor: must be > 0 (got -5)"),
        8: ("channel", "CHEQUE", "channel: must be one of POS/ECOM/ATM/MOBILE"),
        10: ("transaction_id", "", "transaction_id: required, must be non-empty"),
    }
    for index, (field, value, _) in bad.items():
        rows[index][field] = value
    path = write_csv(tmp_path / "mixed.csv", rows)
    summary = replay_file(stack, path, topic=topic, reject_file=tmp_path / "rejects.jsonl")
    assert (summary.read, summary.sent, summary.rejected, summary.failed) == (12, 8, 4, 0)

    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [i + 2 for i in sorted(bad)]  # header is line 1
    for reject, index in zip(rejects, sorted(bad), strict=True):
        assert len(reject["errors"]) == 1 and reject["errors"][0].startswith(bad[index][2])

    good_ids = {r["transaction_id"] for i, r in enumerate(records) if i not in bad}
    assert set(summary.ids) == good_ids
    assert {v["transaction_id"] for _, v in consume_all(stack, topic, 8)} == good_ids


@pytest.mark.stack
def test_labels_load(stack, unique_topic, tmp_path):
    topic = create_topic(stack, unique_topic, 3)
    path = tmp_path / "labels.csv"
    path.write_text("transaction_id,is_fraud,scenario\n"
                    "t-1,true,card_testing\nt-2,false,\nt-3,maybe,x\nt-4,1,velocity_burst\n")
    summary = load_labels(stack, path, topic=topic)
    assert (summary.read, summary.sent, summary.rejected, summary.failed) == (4, 3, 1, 0)
    reject = json.loads(summary.reject_file.read_text())
    assert reject["line"] == 4 and reject["errors"] == ["is_fraud: must be true or false (got 'maybe')"]
    back = {v["transaction_id"]: v for _, v in consume_all(stack, topic, 3)}
    assert {k: (v["is_fraud"], v["scenario"], v["source"]) for k, v in back.items()} == {
        "t-1": (True, "card_testing", "file"), "t-2": (False, None, "file"), "t-4": (True, "velocity_burst", "file")}
