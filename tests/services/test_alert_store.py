"""Alert storage against the real PostgreSQL of the stack: dedupe, triage, filters, export, the CLI.

Every test uses its own bank id and alert ids, so tests never see each other's rows in the shared table.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from services.alerts import store
from services.alerts.alert import Alert, InvalidAlert
from services.alerts.cli import alerts as alerts_cli
from services.alerts.cli import parse_since
from services.alerts.export import write_export

NOW = datetime.now(UTC).replace(microsecond=0)


def record(n: int = 0, bank: str = "bank-s", prefix: str = "", **overrides) -> dict:
    detected = NOW - timedelta(minutes=n)
    rec = {
        "alert_id": f"{prefix}alert-{n}", "transaction_id": f"{prefix}tx-{n}", "card_token": f"card-{n % 3}",
        "customer_id": f"cust-{n}", "bank_id": bank, "rules": ["velocity@v1", "geo@v2"], "score": 0.8,
        "severity": "HIGH", "reasons": ["5 transactions in 60 s", "2 countries within 1 h"],
        "amount_minor": 12345 + n, "currency": "EUR", "event_time": detected - timedelta(seconds=3),
        "detected_at": detected,
    }  # fmt: skip
    rec.update(overrides)
    return rec


def alerts_of(n: int, bank: str, prefix: str) -> list[Alert]:
    return [Alert.from_record(record(i, bank, prefix), partition=0, offset=i) for i in range(n)]


@pytest.fixture
def ids():
    """(bank, prefix) unique to the test."""
    tag = uuid.uuid4().hex[:8]
    return f"bank-{tag}", f"{tag}-"


@pytest.fixture
def conn(stack):
    with store.connect(stack.postgres_dsn) as c:
        yield c


def cli_env(stack) -> dict[str, str]:
    env = {"RTFD_STATE_DIR": str(stack.state_dir), "RTFD_PORT_OFFSET": str(stack.port_offset)}
    if stack.pg_dsn is not None:
        env["RTFD_PG_DSN"] = stack.pg_dsn.get_secret_value()
    return env


# --- validation and parsing (no servers) -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"alert_id": ""}, "missing or empty alert_id"),
        ({"alert_id": None}, "missing or empty alert_id"),
        ({"rules": []}, "rules is empty"),
        ({"score": 1.5}, "score must be a number in [0, 1]"),
        ({"score": float("nan")}, "score must be a number in [0, 1]"),
        ({"severity": "PANIC"}, "severity must be one of"),
        ({"currency": "euro"}, "currency must be an ISO 4217 code"),
        ({"amount_minor": "12"}, "amount_minor must be an integer"),
        ({"detected_at": "yesterday"}, "detected_at must be a timestamp"),
    ],
)
def test_invalid_records_name_the_problem(overrides, problem):
    with pytest.raises(InvalidAlert, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Alert.from_record(record(**overrides))


def test_epoch_millis_and_webhook_payload():
    ms = int(NOW.timestamp() * 1000)
    alert = Alert.from_record(record(event_time=ms, detected_at=ms + 250))
    payload = alert.to_json()
    assert payload["event_time"] == NOW.isoformat(timespec="milliseconds")
    assert payload["detected_at"].endswith(".250+00:00")
    assert payload["rules"] == ["velocity@v1", "geo@v2"] and "kafka_offset" not in payload
    json.dumps(payload)


def test_parse_since():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("1h", now) == now - timedelta(hours=1)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-02-28T10:00:00") == datetime(2026, 2, 28, 10, tzinfo=UTC)
    assert parse_since("2026-02-28T10:00:00+01:00").utcoffset() == timedelta(hours=1)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("last tuesday")


# --- the table ---------------------------------------------------------------------------------------------


@pytest.mark.stack
def test_insert_twice_stores_once_and_keeps_triage(conn, ids):
    bank, prefix = ids
    batch = alerts_of(3, bank, prefix)
    assert store.insert_alerts(conn, batch + batch[:1]) == (3, 1)  # a duplicate inside one batch too
    store.resolve(conn, batch[0].alert_id, "fraud", note="customer confirmed", assignee="ana")
    assert store.insert_alerts(conn, batch) == (0, 3)  # redelivery
    rows = store.list_alerts(conn, bank=bank)
    assert len(rows) == 3
    first = store.get_alert(conn, batch[0].alert_id)
    assert first["status"] == "confirmed_fraud" and first["note"] == "customer confirmed"  # not reset
    assert first["rules"] == ["velocity@v1", "geo@v2"] and first["kafka_offset"] == 0
    assert first["event_time"] == NOW - timedelta(seconds=3)


@pytest.mark.stack
def test_resolve_sets_status_and_triage_time(conn, ids):
    bank, prefix = ids
    alert_id = alerts_of(1, bank, prefix)[0].alert_id
    store.insert_alerts(conn, alerts_of(1, bank, prefix))
    assert store.get_alert(conn, alert_id)["status"] == "open"

    row = store.resolve(conn, alert_id, "legit", note="travel notice on file")
    assert row["status"] == "false_positive" and row["triaged_at"] is not None
    assert row["note"] == "travel notice on file" and row["assignee"] is None

    row = store.resolve(conn, alert_id, "fraud", assignee="bo")  # changing one's mind keeps the note
    assert (row["status"], row["note"], row["assignee"]) == ("confirmed_fraud", "travel notice on file", "bo")

    with pytest.raises(store.UnknownAlertError, match=f"no alert with id '{prefix}nope'"):
        store.resolve(conn, f"{prefix}nope", "fraud")
    with pytest.raises(ValueError, match="resolve as one of"):
        store.resolve(conn, alert_id, "maybe")


@pytest.mark.stack
def test_list_filters(conn, ids):
    bank, prefix = ids
    batch = alerts_of(5, bank, prefix)  # detected now, 1, 2, 3, 4 minutes ago
    store.insert_alerts(conn, batch)
    store.resolve(conn, batch[1].alert_id, "fraud")
    store.resolve(conn, batch[2].alert_id, "legit")

    newest_first = [r["alert_id"] for r in store.list_alerts(conn, bank=bank)]
    assert newest_first == [a.alert_id for a in batch]
    assert [r["alert_id"] for r in store.list_alerts(conn, bank=bank, limit=2)] == newest_first[:2]
    recent = store.list_alerts(conn, bank=bank, since=NOW - timedelta(minutes=2, seconds=30))
    assert [r["alert_id"] for r in recent] == newest_first[:3]
    assert [r["alert_id"] for r in store.list_alerts(conn, bank=bank, status="open")] == \
        [batch[0].alert_id, batch[3].alert_id, batch[4].alert_id]
    assert [r["alert_id"] for r in store.list_alerts(conn, bank=bank, status="confirmed_fraud")] == [batch[1].alert_id]
    assert store.list_alerts(conn, bank=bank, severity="LOW") == []
    assert store.list_alerts(conn, bank=bank + "-other") == []
    with pytest.raises(ValueError, match="status must be one of"):
        store.list_alerts(conn, status="closed")


@pytest.mark.stack
def test_export_csv_and_jsonl(conn, ids):
    bank, prefix = ids
    batch = alerts_of(3, bank, prefix)
    store.insert_alerts(conn, batch)
    store.resolve(conn, batch[0].alert_id, "fraud")

    out = io.StringIO()
    n = write_export(conn, out, "jsonl")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert n == len(rows) >= 3
    mine = [r for r in rows if r["bank_id"] == bank]
    assert [r["alert_id"] for r in mine] == [a.alert_id for a in reversed(batch)]  # detected_at order
    assert mine[-1]["status"] == "confirmed_fraud" and mine[-1]["rules"] == ["velocity@v1", "geo@v2"]
    assert mine[-1]["detected_at"] == NOW.isoformat(timespec="milliseconds")
    assert set(mine[0]) == set(store.COLUMNS)

    out = io.StringIO()
    write_export(conn, out, "csv")
    mine_csv = [r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["bank_id"] == bank]
    assert [r["alert_id"] for r in mine_csv] == [a.alert_id for a in reversed(batch)]
    assert json.loads(mine_csv[0]["reasons"]) == ["5 transactions in 60 s", "2 countries within 1 h"]
    assert (mine_csv[-1]["transaction_id"], mine_csv[-1]["score"], mine_csv[-1]["severity"]) == \
        (batch[0].transaction_id, "0.8", "HIGH")


@pytest.mark.stack
def test_cli_list_resolve_export(stack, conn, ids, tmp_path):
    bank, prefix = ids
    batch = alerts_of(2, bank, prefix)
    store.insert_alerts(conn, batch)
    runner, env = CliRunner(), cli_env(stack)

    result = runner.invoke(alerts_cli, ["list", "--bank", bank, "--since", "1h"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["detected_at", "alert_id", "bank_id", "severity", "score", "status", "amount", "rules"]
    assert [line.split()[1] for line in lines[1:]] == [a.alert_id for a in batch]
    assert "123.45 EUR" in lines[1] and "velocity@v1,geo@v2" in lines[1]

    result = runner.invoke(alerts_cli, ["resolve", batch[1].alert_id, "--as", "fraud", "--note", "chargeback"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert "confirmed_fraud" in result.stdout
    result = runner.invoke(alerts_cli, ["list", "--bank", bank, "--status", "confirmed_fraud"], env=env)
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == [batch[1].alert_id]

    result = runner.invoke(alerts_cli, ["resolve", f"{prefix}missing", "--as", "legit"], env=env)
    assert result.exit_code == 1 and "no alert with id" in result.output

    out = tmp_path / "alerts.jsonl"
    result = runner.invoke(alerts_cli, ["export", "--format", "jsonl", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    exported = {r["alert_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert exported[batch[1].alert_id]["note"] == "chargeback"
