"""The simulator without Kafka: determinism, scenarios, look-alikes, and that card numbers never leak."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from collections import defaultdict

import fastavro
import pytest

import schemas
from services.producer.scenarios import flight_ms
from services.producer.simulator import FRAUD_SCENARIOS, LEGIT_PATTERNS, Simulator, activity_weight
from services.producer.tokenization import Card, card_token, generate_pan, luhn_check_digit
from services.producer.world import bank_iin, city_distance, distance_km
from services.transactions import luhn_valid, validate_transaction

KEY = b"test-key"
HEX64 = re.compile(r"[0-9a-f]{64}")
DIGIT_RUN = re.compile(r"\d{13,19}")


def run(sim: Simulator, n: int) -> list:
    events = [sim.next_event() for _ in range(n)]
    return events + list(sim.drain())


def sim(**kw) -> Simulator:
    kw.setdefault("customers", 300)
    return Simulator("bank-a", KEY, seed=kw.pop("seed", 7), **kw)


def test_same_seed_same_stream_other_seed_other_stream():
    a = [e.record for e in run(sim(fraud_rate=0.05, legit_pattern_rate=0.05), 2000)]
    b = [e.record for e in run(sim(fraud_rate=0.05, legit_pattern_rate=0.05), 2000)]
    c = [e.record for e in run(sim(seed=8, fraud_rate=0.05, legit_pattern_rate=0.05), 2000)]
    assert a == b
    assert a != c
    assert len({r["transaction_id"] for r in a}) == len(a)


def test_banks_have_different_customers_but_share_merchants():
    a, b = Simulator("bank-a", KEY, seed=1, customers=50), Simulator("bank-b", KEY, seed=1, customers=50)
    assert a.world.terminals == b.world.terminals
    assert {c.card.token for c in a.world.customers}.isdisjoint(c.card.token for c in b.world.customers)


@pytest.mark.parametrize("scenario", FRAUD_SCENARIOS)
def test_every_scenario_appears_when_forced(scenario):
    events = run(sim(fraud_rate=1.0, scenarios=(scenario,)), 3)
    fraud = [e for e in events if e.is_fraud]
    assert fraud and all(e.scenario == scenario for e in fraud)
    assert all(e.scenario is None for e in events if not e.is_fraud)


def _first_episode(scenario):
    s = sim(fraud_rate=1.0, scenarios=(scenario,))
    return s, [s.next_event()] + list(s.drain())


def test_card_testing_is_tiny_ecom_amounts_then_a_large_one():
    _, events = _first_episode("card_testing")
    amounts = [e.record["amount_minor"] for e in events]
    assert {e.record["channel"] for e in events} == {"ECOM"}
    assert len(events) >= 4 and max(amounts[:-1]) < amounts[-1] / 50
    gaps = [b.record["event_time"] - a.record["event_time"] for a, b in zip(events, events[1:], strict=False)]
    assert all(60_000 <= g <= 300_000 for g in gaps)  # minutes apart


def test_impossible_travel_is_two_pos_far_apart_within_minutes():
    _, events = _first_episode("impossible_travel")
    home, away = events
    assert not home.is_fraud and away.is_fraud
    assert {home.record["channel"], away.record["channel"]} == {"POS"}
    r1, r2 = home.record, away.record
    assert distance_km(r1["lat"], r1["lon"], r2["lat"], r2["lon"]) > 900
    assert r2["event_time"] - r1["event_time"] <= 30 * 60_000


def test_account_takeover_uses_a_new_device_and_spends_more():
    s, events = _first_episode("account_takeover")
    customer = next(c for c in s.world.customers if c.customer_id == events[0].record["customer_id"])
    assert {e.record["channel"] for e in events} <= {"ECOM", "MOBILE"}
    assert all(e.record["device_id"] not in customer.devices for e in events)
    assert min(e.record["amount_minor"] for e in events) > 0


def test_compromised_terminal_many_cards_then_fraud_elsewhere():
    _, events = _first_episode("compromised_terminal")
    visits = [e for e in events if e.pattern == "terminal_visit"]
    assert len({e.record["terminal_id"] for e in visits}) == 1
    assert len({e.record["card_token"] for e in visits}) >= 5
    visited = {e.record["card_token"]: e.record["event_time"] for e in visits}
    fraud = [e for e in events if e.is_fraud]
    assert fraud and all(e.record["card_token"] in visited for e in fraud)
    assert all(e.record["terminal_id"] != visits[0].record["terminal_id"] for e in fraud)
    assert all(e.record["event_time"] > visited[e.record["card_token"]] for e in fraud)


def test_velocity_burst_is_many_transactions_in_minutes():
    _, events = _first_episode("velocity_burst")
    assert len(events) >= 8 and all(e.is_fraud for e in events)
    assert events[-1].record["event_time"] - events[0].record["event_time"] <= 15 * 60_000


def test_legit_look_alikes_are_generated_and_not_fraud():
    s = sim(fraud_rate=0.0, legit_pattern_rate=1.0)
    events = run(s, 60)
    patterns = {e.pattern for e in events}
    assert set(LEGIT_PATTERNS) <= patterns
    assert not any(e.is_fraud for e in events)
    # a mall burst is three POS purchases within half an hour
    by_customer = defaultdict(list)
    for e in events:
        by_customer[(e.pattern, e.record["customer_id"])].append(e.record)
    bursts = [rs for (p, _), rs in by_customer.items() if p == "mall_burst"]
    assert any(len(rs) == 3 and rs[-1]["event_time"] - rs[0]["event_time"] <= 40 * 60_000 for rs in bursts)


def test_travel_keeps_a_plausible_gap():
    s = sim(fraud_rate=0.0, legit_pattern_rate=1.0)
    events = run(s, 60)
    trips = defaultdict(list)
    for e in events:
        if e.pattern == "travel":
            trips[e.record["customer_id"]].append(e.record)
    assert trips
    homes = {c.customer_id: c.home for c in s.world.customers}
    for customer_id, records in trips.items():
        ticket, abroad = records[0], [r for r in records[1:] if r["channel"] == "POS"]
        assert ticket["channel"] == "ECOM" and abroad
        dest = next(c for c in s.world.terminals.values() for t in c if t.terminal_id == abroad[0]["terminal_id"])
        gap = abroad[0]["event_time"] - ticket["event_time"]
        assert gap >= flight_ms(city_distance(homes[customer_id], dest[0].city))


def test_rhythm_busier_at_lunch_than_at_night():
    monday = 1740960000000  # 2025-03-03 00:00 UTC
    assert activity_weight(monday + 12 * 3600_000) > 5 * activity_weight(monday + 3 * 3600_000)


def test_wall_clock_mode_stamps_the_clock():
    s = sim(clock=lambda: 1_750_000_000.5)
    assert s.next_event().record["event_time"] == 1_750_000_000_500


def test_schema_versions_and_every_record_valid():
    for version in schemas.TRANSACTION_VERSIONS:
        events = run(sim(schema_version=version, fraud_rate=0.05, legit_pattern_rate=0.05), 1500)
        for e in events:
            assert validate_transaction(e.record, version) == [], e.record
            assert list(e.record) == schemas.transaction_fields(version)
        if version == 2:
            online = [e.record for e in events if e.record["channel"] in ("ECOM", "MOBILE")]
            assert online and all(r["device_id"] for r in online)
            assert all(r["device_id"] is None and r["lat"] is not None for r in (e.record for e in events)
                       if r["channel"] in ("POS", "ATM"))


def test_pans_never_appear_in_records_or_serialized_bytes():
    s = sim(fraud_rate=0.05, legit_pattern_rate=0.05)
    pans = {c.card.pan for c in s.world.customers}
    assert all(luhn_valid(p) and len(p) == 16 for p in pans)
    events = run(s, 3000)
    seen = [json.dumps([e.record for e in events]), repr(events)]
    for version in schemas.TRANSACTION_VERSIONS:
        parsed = fastavro.parse_schema(schemas.schema_dict(f"transaction-v{version}.avsc"))
        fields = schemas.transaction_fields(version)
        buf = io.BytesIO()
        for e in events:
            fastavro.schemaless_writer(buf, parsed, {k: e.record[k] for k in fields})
        seen.append(buf.getvalue().decode("latin-1"))
    text = "\n".join(seen)
    assert not [pan for pan in pans if pan in text]
    for e in events:
        assert HEX64.fullmatch(e.record["card_token"])
        for name, value in e.record.items():
            if isinstance(value, str) and name != "card_token":  # a 64-hex token may hold digit runs
                assert not DIGIT_RUN.search(value), (name, value)
    customers = repr(s.world.customers)
    assert not [pan for pan in pans if pan in customers]


@pytest.mark.parametrize("length", [12, 13, 14, 15, 18])
def test_luhn_check_digit_is_the_one_digit_that_completes_a_luhn_number(length):
    import random

    rng = random.Random(length)
    for _ in range(200):
        partial = "".join(str(rng.randrange(10)) for _ in range(length))
        valid = [d for d in "0123456789" if luhn_valid(partial + d)]
        assert valid == [luhn_check_digit(partial)]


def test_card_token_is_a_stable_hmac():
    import random

    pan = generate_pan(random.Random(1), bank_iin("bank-a"))
    assert luhn_valid(pan) and pan.startswith(bank_iin("bank-a"))
    token = card_token(pan, KEY)
    assert HEX64.fullmatch(token)
    assert token == card_token(pan, KEY) == hmac.new(KEY, pan.encode(), hashlib.sha256).hexdigest()
    assert token != card_token(pan, b"other-key")
    card = Card(pan, KEY)
    assert card.token == token and pan not in repr(card)
