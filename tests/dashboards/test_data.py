"""The dashboard's queries (dashboards/data.py) against the stack's real PostgreSQL, on rows each test writes.

Every test uses a bank id of its own (and times no other data has: a random moment around 2001-2004 for the
live windows), and compares with numbers computed by hand.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dashboards import data
from dashboards.role import dashboard_dsn, enable_login
from services.alerts import store
from tests.dashboards.seed import insert_alerts, insert_label, insert_transaction, make_alert, new_bank

pytestmark = pytest.mark.stack


@pytest.fixture
def conn(stack):
    with store.connect(stack.postgres_dsn) as c:
        yield c


@pytest.fixture
def bank() -> str:
    return new_bank()


def quiet_moment() -> datetime:
    """A time no other test writes at, so windows 'before T' hold only this test's rows."""
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(100_000_000), microseconds=0)


# --- live feed ---------------------------------------------------------------------------------------------------
def test_feed_returns_only_new_alerts_bounded_by_the_limit(conn, bank):
    only_bank = data.FeedFilter(bank=bank)
    now = datetime.now(UTC)
    first = [make_alert(insert_transaction(conn, bank, now)) for _ in range(3)]
    insert_alerts(conn, first)

    cursor = data.FeedCursor()
    rows = data.new_alerts(conn, cursor, only_bank, limit=500)
    assert sorted(r["alert_id"] for r in rows) == sorted(a.alert_id for a in first)
    assert data.new_alerts(conn, cursor, only_bank) == []  # nothing new, nothing again

    later = [make_alert(insert_transaction(conn, bank, now)) for _ in range(7)]
    insert_alerts(conn, later)
    page1 = data.new_alerts(conn, cursor, only_bank, limit=5)
    page2 = data.new_alerts(conn, cursor, only_bank, limit=5)
    assert len(page1) == 5 and len(page2) == 2
    assert sorted(r["alert_id"] for r in page1 + page2) == sorted(a.alert_id for a in later)
    assert data.new_alerts(conn, cursor, only_bank, limit=5) == []

    # a fresh feed starts with the newest `limit` alerts only, oldest first
    start = data.new_alerts(conn, data.FeedCursor(), only_bank, limit=4)
    assert len(start) == 4
    assert [r["stored_at"] for r in start] == sorted(r["stored_at"] for r in start)
    assert {r["alert_id"] for r in start} <= {a.alert_id for a in later}


def test_feed_picks_up_an_alert_committed_late_with_an_earlier_stored_at(conn, bank):
    """stored_at is the inserting transaction's start: a slow transaction can commit after a newer row."""
    only_bank = data.FeedFilter(bank=bank)
    now = datetime.now(UTC)
    insert_alerts(conn, [make_alert(insert_transaction(conn, bank, now))])
    cursor = data.FeedCursor()
    assert len(data.new_alerts(conn, cursor, only_bank)) == 1
    late = make_alert(insert_transaction(conn, bank, now))
    insert_alerts(conn, [late])
    conn.execute("UPDATE alerts SET stored_at = %s WHERE alert_id = %s",
                 (cursor.stored_at - timedelta(seconds=2), late.alert_id))  # fmt: skip
    assert [r["alert_id"] for r in data.new_alerts(conn, cursor, only_bank)] == [late.alert_id]
    assert data.new_alerts(conn, cursor, only_bank) == []


def test_feed_filters_by_severity_and_rule(conn, bank):
    now = datetime.now(UTC)
    alerts = [
        make_alert(insert_transaction(conn, bank, now), severity="LOW", rules=("amount_spike",)),
        make_alert(insert_transaction(conn, bank, now), severity="CRITICAL", rules=("velocity", "geo")),
        make_alert(insert_transaction(conn, bank, now), severity="CRITICAL", rules=("amount_spike",)),
    ]
    insert_alerts(conn, alerts)
    ids = [a.alert_id for a in alerts]

    def feed(**f):
        return sorted(r["alert_id"] for r in data.latest_alerts(conn, data.FeedFilter(bank=bank, **f)))

    assert feed(severity="CRITICAL") == sorted(ids[1:])
    assert feed(rule="amount_spike") == sorted([ids[0], ids[2]])
    assert feed(rule="geo", severity="CRITICAL") == [ids[1]]
    options = data.filter_options(conn)
    assert bank in options["banks"] and {"amount_spike", "velocity", "geo"} <= set(options["rules"])


# --- live KPIs ---------------------------------------------------------------------------------------------------
def test_live_kpis_and_rate_by_bank(conn, bank):
    at = quiet_moment()
    # 30 archived in the 10 s before `at`, 5 just before that window (still within 15 min)
    inside = [insert_transaction(conn, bank, at - timedelta(seconds=9), processed_at=at - timedelta(seconds=i / 4))
              for i in range(30)]  # fmt: skip
    for i in range(5):
        insert_transaction(conn, bank, at - timedelta(seconds=30), processed_at=at - timedelta(seconds=11 + i))
    # latencies 0.1..0.4 s detected within the 10 s; 1 s and 2 s detected a minute earlier (within 5 min)
    alerts = []
    for tx, latency, ago in zip(inside, (0.1, 0.2, 0.3, 0.4, 1.0, 2.0), (5, 5, 5, 5, 60, 60), strict=False):
        detected = at - timedelta(seconds=ago)
        alerts.append(replace(make_alert(tx, detected_at=detected), event_time=detected - timedelta(seconds=latency)))
    insert_alerts(conn, alerts)

    kpis = data.live_kpis(conn, at=at)
    assert kpis.transactions_per_s == pytest.approx(3.0)  # 30 / 10 s
    assert kpis.alerts_per_s == pytest.approx(0.4)  # 4 / 10 s
    assert kpis.latency_samples == 6
    assert kpis.latency_p50_s == pytest.approx(0.35)  # between 0.3 and 0.4
    assert kpis.latency_p99_s == pytest.approx(1.0 + 0.95 * (2.0 - 1.0))  # linear interpolation, like numpy

    rates = {r["bank_id"]: r for r in data.fraud_rate_by_bank(conn, at=at)}
    assert rates[bank]["transactions"] == 35 and rates[bank]["alerts"] == 6
    assert rates[bank]["alert_rate"] == pytest.approx(6 / 35)
    assert data.live_kpis(conn).at > at  # default: the database's now


# --- triage ------------------------------------------------------------------------------------------------------
def test_transaction_card_history_and_triage(conn, bank):
    start = datetime.now(UTC) - timedelta(hours=1)
    txs = [insert_transaction(conn, bank, start + timedelta(minutes=i)) for i in range(25)]
    flagged = txs[-2]
    alert = make_alert(flagged)
    insert_alerts(conn, [alert])

    assert data.transaction(conn, flagged["transaction_id"])["amount_minor"] == flagged["amount_minor"]
    assert data.transaction(conn, f"{bank}-missing") is None
    history = data.card_history(conn, flagged["card_token"])
    assert [h["transaction_id"] for h in history] == [t["transaction_id"] for t in txs[::-1][:20]]
    assert [h["alerted"] for h in history[:3]] == [False, True, False]

    updated = data.triage(conn, alert.alert_id, "fraud", note="card reported stolen", assignee="ana")
    assert (updated["status"], updated["note"], updated["assignee"]) == ("confirmed_fraud", "card reported stolen",
                                                                          "ana")  # fmt: skip
    assert data.alert(conn, alert.alert_id)["triaged_at"] is not None


# --- history -----------------------------------------------------------------------------------------------------
@pytest.fixture
def history(conn, bank):
    """Three days of a bank: day 0 has 4 transactions (2 alerts, 1 confirmed), day 1 has 2 (1 alert)."""
    day0 = datetime(2002, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(3000))
    txs = [insert_transaction(conn, bank, day0 + timedelta(hours=h), mcc="1111", channel="ECOM", country="FR",
                              lat=48.86, lon=2.35) for h in (1, 2, 3, 4)]  # fmt: skip
    txs += [insert_transaction(conn, bank, day0 + timedelta(days=1, hours=h), mcc="2222", channel="ATM",
                               country="ES", lat=None, lon=None) for h in (1, 2)]  # fmt: skip
    alerts = [
        make_alert(txs[0], rules=("r-velocity",)),
        make_alert(txs[1], rules=("r-velocity", "r-geo")),
        make_alert(txs[1], rules=("r-geo",), alert_id=f"{txs[1]['transaction_id']}-second"),  # same transaction
        make_alert(txs[4], rules=("r-velocity",)),
    ]
    insert_alerts(conn, alerts)
    store.resolve(conn, alerts[0].alert_id, "fraud")
    store.resolve(conn, alerts[1].alert_id, "legit")
    store.resolve(conn, alerts[3].alert_id, "fraud")
    return data.Period(day0, day0 + timedelta(days=3), bank), day0, txs


def test_daily_volumes(conn, history):
    period, day0, _ = history
    rows = data.daily_volumes(conn, period)
    assert [(r["day"].date(), r["transactions"], r["alerts"], r["confirmed_fraud"]) for r in rows] == [
        (day0.date(), 4, 3, 1),
        ((day0 + timedelta(days=1)).date(), 2, 1, 1),
    ]


def test_alert_rate_by_dimension_counts_flagged_transactions_once(conn, history):
    period, _, _ = history
    by_mcc = data.alert_rate_by(conn, "mcc", period)
    # 1111: 4 transactions, 2 flagged (one of them by two alerts); 2222: 2 transactions, 1 flagged
    assert [(r["key"], r["transactions"], r["alerts"]) for r in by_mcc] == [("1111", 4, 2), ("2222", 2, 1)]
    assert [r["alert_rate"] for r in by_mcc] == pytest.approx([0.5, 0.5])
    assert [r["key"] for r in data.alert_rate_by(conn, "channel", period)] == ["ECOM", "ATM"]  # same rate: volume
    assert [r["key"].strip() for r in data.alert_rate_by(conn, "country", period, min_volume=3)] == ["FR"]
    (only,) = data.alert_rate_by(conn, "bank", period)
    assert (only["transactions"], only["alerts"]) == (6, 3)
    assert data.riskiest_merchants(conn, period, min_volume=7) == []
    (merchant,) = data.riskiest_merchants(conn, period, min_volume=6)
    assert merchant["alert_rate"] == pytest.approx(3 / 6)
    assert len(data.riskiest_terminals(conn, period, min_volume=1, limit=1)) == 1
    with pytest.raises(KeyError):
        data.alert_rate_by(conn, "amount_minor; DROP TABLE alerts", period)


def test_rule_hits_per_day_and_precision(conn, history):
    period, _, txs = history
    hits = data.rule_hits_per_day(conn, period)
    day0, day1 = txs[0]["event_time"].date(), txs[4]["event_time"].date()
    assert [(r["day"].date(), r["rule"], r["hits"]) for r in hits] == [
        (day0, "r-geo", 2), (day0, "r-velocity", 2), (day1, "r-velocity", 1)]  # fmt: skip
    precision = {r["rule"]: r for r in data.rule_precision(conn, period)}
    # triage: r-velocity confirmed, false positive, confirmed; r-geo false positive, open
    assert (precision["r-velocity"]["alerts"], precision["r-velocity"]["confirmed_fraud"],
            precision["r-velocity"]["false_positive"]) == (3, 2, 1)  # fmt: skip
    assert precision["r-velocity"]["triage_precision"] == pytest.approx(2 / 3)
    assert (precision["r-geo"]["alerts"], precision["r-geo"]["open"]) == (2, 1)
    assert precision["r-geo"]["triage_precision"] == pytest.approx(0.0)
    # no labels yet: nothing to measure against, whatever the triage says
    assert all(r["labelled"] == 0 and r["precision"] is None and r["recall"] is None for r in precision.values())


def test_rule_precision_and_recall_against_labels(conn, history):
    period, _, txs = history
    # r-velocity flagged t0, t1, t4; r-geo flagged t1 (twice). Labels: t0 fraud, t1 legit, t2 fraud (no rule
    # caught it), t5 legit (not flagged), t4 none.
    insert_label(conn, txs[0], True)
    insert_label(conn, txs[1], False)
    insert_label(conn, txs[2], True)
    insert_label(conn, txs[5], False)
    cols = ("alerts", "labelled", "labelled_fraud", "precision", "fraud_caught", "fraud_labelled", "recall")
    rows = {r["rule"]: tuple(r[c] for c in cols) for r in data.rule_precision(conn, period)}
    assert rows == {"r-velocity": (3, 2, 1, pytest.approx(0.5), 1, 2, pytest.approx(0.5)),
                    "r-geo": (2, 1, 0, pytest.approx(0.0), 0, 2, pytest.approx(0.0))}  # fmt: skip

    # a chargeback later says t1 was fraud after all: the newer label wins, both rules gain
    insert_label(conn, txs[1], True, labelled_at=txs[1]["event_time"] + timedelta(days=20))
    rows = {r["rule"]: tuple(r[c] for c in cols) for r in data.rule_precision(conn, period)}
    assert rows == {"r-velocity": (3, 2, 2, pytest.approx(1.0), 2, 3, pytest.approx(2 / 3)),
                    "r-geo": (2, 1, 1, pytest.approx(1.0), 1, 3, pytest.approx(1 / 3))}  # fmt: skip
    # the triage columns stay the analysts' view
    velocity = next(r for r in data.rule_precision(conn, period) if r["rule"] == "r-velocity")
    assert (velocity["confirmed_fraud"], velocity["false_positive"]) == (2, 1)
    assert velocity["triage_precision"] == pytest.approx(2 / 3)

    # the period selects by event time: the second day alone has t4 (unlabelled) and t5 (legit, not flagged)
    day1 = data.Period(txs[4]["event_time"] - timedelta(hours=2), period.until, period.bank)
    (only,) = data.rule_precision(conn, day1)
    assert (only["rule"], only["alerts"], only["labelled"], only["precision"], only["fraud_labelled"],
            only["recall"]) == ("r-velocity", 1, 0, None, 0, None)  # fmt: skip


def test_alert_map_aggregates_per_cell(conn, history):
    period, _, _ = history
    cells = data.alert_map(conn, period, cell_degrees=0.5)
    # three alerts on Paris transactions (48.86, 2.35 -> cell 49.0, 2.5); the ATM ones have no location
    assert [(r["lat"], r["lon"], r["alerts"]) for r in cells] == [(49.0, 2.5, 3)]
    assert data.alert_map(conn, period, limit=0) == []


# --- the dashboard's database role -------------------------------------------------------------------------------
def test_dashboard_role_reads_and_triages_but_cannot_write_anything_else(stack, conn, bank):
    password = secrets.token_urlsafe(16)
    enable_login(stack.postgres_dsn, password)
    tx = insert_transaction(conn, bank, datetime.now(UTC))
    alert = make_alert(tx)
    insert_alerts(conn, [alert])
    with store.connect(dashboard_dsn(stack.postgres_dsn, password)) as role:
        assert role.execute("SELECT current_user").fetchone()[0] == "rtfd_dashboard"
        assert data.transaction(role, tx["transaction_id"]) is not None
        assert data.triage(role, alert.alert_id, "legit", note="known customer")["status"] == "false_positive"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            insert_transaction(role, bank, datetime.now(UTC))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            role.execute("UPDATE alerts SET score = 0 WHERE alert_id = %s", (alert.alert_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            role.execute("DELETE FROM alerts WHERE alert_id = %s", (alert.alert_id,))
