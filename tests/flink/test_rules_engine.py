"""The rule engine on feature vectors: each rule fires on its scenario and stays quiet on its look-alike.

Scenario streams come from the producer's simulator (forced scenarios, a simulated wall clock at the
platform's default density) through flink.features.reference_features: the job's own per-card feature
code, without Flink.
"""

from __future__ import annotations

import collections
import io
import json
import math
from itertools import count
from types import SimpleNamespace

import fastavro
import pandas as pd
import pytest
from pyflink.table import DataTypes
from pyflink.table.types import create_arrow_schema
from pyflink.table.utils import pandas_to_arrow

import schemas
from flink.alerts import AlertEncoder
from flink.features import CARD_FEATURES, reference_features
from flink.rules.config import apply_override, load_defaults
from flink.rules.engine import FEATURES, alert_id, evaluate, first_pass, poisson_sf
from flink.udfs import RaiseAlerts
from services.producer.simulator import Simulator

RULES = load_defaults()
TYPICAL = 28.0


def features(**changes) -> dict:
    """An ordinary card: 40 earlier purchases around 28 EUR over ~67 minutes, nothing unusual now."""
    row = dict(transaction_id="t-1", amount_eur=30.0, device_id=None, hist_n=40,
               hist_sum_log=40 * math.log(TYPICAL), hist_sumsq_log=40 * (math.log(TYPICAL) ** 2 + 0.36),
               hist_span_s=4000.0, cnt_10m=6, sum_eur_10m=170.0, tiny_30m=0, distance_km=None, gap_s=None,
               device_uses=5, device_hist=10, suspect_terminal=None, suspect_cards=None)
    row.update(changes)
    return row


def verdict(rows: list[dict], rules=RULES) -> pd.DataFrame:
    return evaluate(pd.DataFrame(rows)[list(FEATURES)], rules)


def fired(rows, rules=RULES) -> list[set[str]]:
    return [{r.split("@")[0] for r in (rs or [])} for rs in verdict(rows, rules)["rules"]]


@pytest.mark.parametrize(
    ("rule", "scenario", "look_alike"),
    [
        ("velocity", features(cnt_10m=16, sum_eur_10m=800.0), features(cnt_10m=3)),  # mall: three purchases
        ("card_testing", features(tiny_30m=4, amount_eur=900.0), features(amount_eur=900.0 / 30)),
        ("impossible_travel", features(distance_km=1500.0, gap_s=600.0),
         features(distance_km=1500.0, gap_s=(1500 / 800 + 2.5) * 3600)),  # a flight
        ("account_takeover", features(device_id="dev-new", device_uses=1, amount_eur=400.0),
         features(device_id="dev-own", device_uses=12, amount_eur=400.0)),  # own device, big purchase
        ("compromised_terminal", features(suspect_terminal="T-1", suspect_cards=4),
         features(suspect_terminal="T-1", suspect_cards=1)),
    ],
)
def test_rule_fires_on_its_scenario_and_not_on_its_look_alike(rule, scenario, look_alike):
    got = fired([scenario, look_alike])
    assert rule in got[0]
    assert rule not in got[1]


def test_large_legit_purchase_is_at_most_low():
    out = verdict([features(amount_eur=TYPICAL * 20)])
    assert out.loc[0, "rules"] == ["amount_anomaly@1"] and out.loc[0, "severity"] == "LOW"


def test_quiet_rows_are_all_null_and_verdicts_merge_rules():
    out = verdict([features(), features(tiny_30m=4, amount_eur=900.0, distance_km=1500.0, gap_s=60.0)])
    assert out.loc[0].isna().all()
    assert set(out.loc[1, "rules"]) == {"card_testing@1", "impossible_travel@1", "amount_anomaly@1"}
    assert len(out.loc[1, "reasons"]) == 3 and out.loc[1, "severity"] == "CRITICAL"
    assert out.loc[1, "alert_id"] == alert_id("t-1")


def test_velocity_needs_a_baseline_or_a_high_absolute_count():
    new_card = dict(hist_n=3, hist_span_s=100.0, device_uses=1, device_hist=0)
    assert fired([features(cnt_10m=10, **new_card), features(cnt_10m=16, **new_card)]) == [set(), {"velocity"}]


def test_disabled_rule_and_changed_params_apply():
    rules = dict(RULES)
    rules["impossible_travel"] = apply_override(RULES["impossible_travel"], {"enabled": False})
    travel = features(distance_km=1500.0, gap_s=600.0)
    assert fired([travel], rules) == [set()]
    rules["impossible_travel"] = apply_override(RULES["impossible_travel"], {"params": {"max_kmh": 20000}})
    assert fired([travel], rules) == [set()]


def test_broken_reason_template_still_alerts():
    rules = dict(RULES)
    rules["card_testing"] = apply_override(RULES["card_testing"], {"reason": "{nope:.1f} and {amount_eur:zz}"})
    out = verdict([features(tiny_30m=4, amount_eur=900.0)], rules)
    assert "card_testing@1" in out.loc[0, "rules"]
    assert out.loc[0, "reasons"][out.loc[0, "rules"].index("card_testing@1")].startswith("? and 900")


def test_alert_id_is_deterministic_per_transaction():
    assert alert_id("tx-1") == alert_id("tx-1") != alert_id("tx-2")


def test_poisson_tail():
    assert poisson_sf([0], [3.0])[0] == 1.0
    assert poisson_sf([1], [2.0])[0] == pytest.approx(1 - math.exp(-2))
    assert poisson_sf([20], [6.0])[0] < 1e-4


def test_raise_alerts_encodes_where_rules_fired_and_is_null_elsewhere():
    """raise_alerts, rule pass 2 and the encoding in one Python step: the contract's bytes (Confluent wire
    format) where a rule fired, null where none did, as the UDF hands them to Arrow."""
    step = RaiseAlerts({}, "fraud-rules", "http://registry.invalid", "fraud-alerts-value")
    step.rules.feed = SimpleNamespace(rules=RULES)  # what open() gives: a caught-up rule feed
    step.encoder = AlertEncoder(7)  # and the registered schema id
    rows = pd.DataFrame([features(), features(transaction_id="t-2", tiny_30m=4, amount_eur=900.0)])
    context = pd.DataFrame({"card_token": ["c-1", "c-2"], "customer_id": ["C-1", "C-2"], "bank_id": ["b", "b"],
                            "amount_minor": [3000, 90000], "currency": ["EUR", "EUR"],
                            "event_ms": [1_741_000_000_000, 1_741_000_001_000]})
    out = step.eval(*(rows[c] for c in FEATURES), *(context[c] for c in RaiseAlerts.CONTEXT))
    batch = pandas_to_arrow(create_arrow_schema(["f0"], [DataTypes.BYTES()]), "UTC", [DataTypes.BYTES()], [out])
    quiet, flagged = batch.column(0).to_pylist()
    assert quiet is None and flagged[:5] == b"\x00\x00\x00\x00\x07"
    schema = fastavro.parse_schema(json.loads(schemas.fraud_alert_schema()))
    alert = fastavro.schemaless_reader(io.BytesIO(flagged[5:]), schema, schema)
    assert (alert["alert_id"], alert["transaction_id"], alert["card_token"]) == (alert_id("t-2"), "t-2", "c-2")
    assert alert["rules"] == ["amount_anomaly@1", "card_testing@1"] and alert["severity"] == "HIGH"
    assert len(alert["reasons"]) == 2 and alert["amount_minor"] == 90000
    assert int(alert["event_time"].timestamp() * 1000) == 1_741_000_001_000


def test_first_pass_names_the_suspect_terminal_and_the_severity_of_anomalies_only():
    """Pass 1 (the reference of the JVM's CardAnomalies): severity only where a rule fired; the card's last
    in-person terminal is the suspect one only within the terminal window before this transaction."""
    window_ms = 60 * 60_000
    rows = [features(transaction_id="quiet"), features(transaction_id="testing", tiny_30m=4, amount_eur=900.0),
            features(transaction_id="old-visit", tiny_30m=4, amount_eur=900.0)]
    visits = [("T-1", 1_000_000), ("T-2", 1_000_000), ("T-3", 1_000_000 - window_ms - 1)]
    inputs = pd.DataFrame([{"transaction_id": r["transaction_id"], "amount_eur": r["amount_eur"],
                            "device_id": r["device_id"], "event_ms": 1_000_000 + 60_000} for r in rows])
    card = pd.DataFrame([{**{c: r.get(c) for c in CARD_FEATURES}, "prev_pos_terminal": terminal,
                          "prev_pos_ms": at} for r, (terminal, at) in zip(rows, visits, strict=True)],
                        columns=list(CARD_FEATURES))
    out = first_pass(inputs, card, RULES, window_ms)
    assert out["first_severity"].tolist() == [None, "HIGH", "HIGH"]
    assert out["suspect_terminal"].tolist() == ["T-1", "T-2", None]


# --- simulator scenarios end to end (features mirror + engine) ------------------------------------------------
def simulate(scenarios: tuple[str, ...], n: int = 30000, seed: int = 3, fraud_rate: float = 0.01):
    ticks = count()
    sim = Simulator("bank-t", b"k" * 32, seed=seed, fraud_rate=fraud_rate, scenarios=scenarios, tps=20,
                    clock=lambda: 1_750_000_000 + next(ticks) / 20)
    events = [sim.next_event() for _ in range(n)]
    rows = reference_features([e.record for e in events])
    out = evaluate(rows, RULES)
    by_id = {e.transaction_id: e for e in events}
    hits = collections.defaultdict(collections.Counter)  # pattern -> rule -> alerts
    fraud_at = collections.defaultdict(list)
    for e in events:
        if e.is_fraud:
            fraud_at[e.record["card_token"]].append(e.record["event_time"])
    for tid, rules, severity in zip(rows["transaction_id"], out["rules"], out["severity"], strict=True):
        e = by_id[tid]
        clean = not any(abs(t - e.record["event_time"]) < 30 * 60_000 for t in fraud_at[e.record["card_token"]])
        hits[e.pattern]["events"] += 1
        for rule in rules or ():
            hits[e.pattern][rule.split("@")[0]] += 1
            if clean:
                hits[e.pattern][f"clean:{rule.split('@')[0]}:{severity}"] += 1
    return hits


@pytest.mark.parametrize(
    ("scenario", "rule"),
    [("card_testing", "card_testing"), ("impossible_travel", "impossible_travel"),
     ("account_takeover", "account_takeover"), ("velocity_burst", "velocity")],
)
def test_simulated_fraud_is_caught_by_its_rule(scenario, rule):
    hits = simulate((scenario,))
    assert hits[scenario]["events"] > 0
    assert hits[scenario][rule] > 0, dict(hits[scenario])


def test_simulated_look_alikes_stay_quiet():
    hits = simulate(("card_testing",), fraud_rate=0.002)  # mostly normal traffic and look-alikes
    assert hits["travel"]["events"] > 0 and hits["mall_burst"]["events"] > 0 and hits["large_purchase"]["events"] > 0
    assert hits["travel"]["clean:impossible_travel:HIGH"] == 0
    assert hits["mall_burst"]["clean:velocity:HIGH"] == 0
    large = {k: v for k, v in hits["large_purchase"].items() if k.startswith("clean:")}
    assert all(k.endswith(":LOW") for k in large), large
