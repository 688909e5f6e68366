"""Rule pass 1 in the JVM (io.rtfd.flink.CardAnomalies and FirstPassRules, jvm/functions) against the Python
reference (flink.features.CardHistory + flink.rules.engine.first_pass, which the unit tests and rule tuning
run): on a local Flink mini-cluster the operator flags the same transactions with the same severity, suspect
terminal and terminal key; the rule set takes the overrides Python takes, refuses those Python refuses and
gives the same verdicts under them."""

from __future__ import annotations

import json
from collections import defaultdict

import pandas as pd
import pytest
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes

from flink.features import CARD_FEATURES
from flink.job import key_by_column
from flink.rules.config import DEFAULTS_FILE, RuleError, apply_override, load_defaults, merge
from flink.rules.engine import first_pass
from flink.stateful import ANOMALY_COLUMNS, CARD_INPUT, card_anomalies, sql_row_type
from tests.flink.test_card_features import TINY, expected, hand_made, mini_cluster, simulated

pytestmark = pytest.mark.timeout(300)
TERMINAL_WINDOW_MS = 60 * 60_000
DEFAULTS = load_defaults()
RULES_ROW = DataTypes.ROW([DataTypes.FIELD("rule_id", DataTypes.STRING()),
                           DataTypes.FIELD("config", DataTypes.STRING())])

# overrides as analysts write them, and what Python makes of each: kept (None) or refused (RuleError)
OVERRIDES = [
    ("velocity", {"version": 2, "enabled": False}),
    ("amount_anomaly", {"params": {"min_z": "2", "min_ratio": 2.5}, "severity": "HIGH"}),
    ("card_testing", {"params": {"min_tiny": 2, "large_eur": 100.0}, "version": "3"}),
    ("impossible_travel", {"params": {"max_kmh": 300}, "severity": "CRITICAL", "reason": "far {distance_km}"}),
    ("account_takeover", {"params": {"min_ratio": True}}),
    ("compromised_terminal", {"params": {"min_cards": 0}}),  # no terminal context in pass 1: fires on all
    ("no_such_rule", {"params": {"x": 1}}),  # kept by the feed, ignored by the merge
    ("velocity", {"severity": "SEVERE"}),
    ("velocity", {"enabled": "no"}),
    ("velocity", {"params": {"min_count": "many"}}),
    ("velocity", {"params": {"min_counts": 9}}),
    ("velocity", {"threshold": 9}),
    ("velocity", {"version": "two"}),
    ("velocity", {"params": {"min_count": None}}),
]


def python_refuses(rule_id: str, override) -> bool:
    if rule_id not in DEFAULTS:
        return not isinstance(override, dict)
    try:
        apply_override(DEFAULTS[rule_id], override)
    except RuleError:
        return True
    return False


def test_jvm_rule_pass_1_flags_what_the_reference_flags():
    rows = hand_made() + simulated()
    env, t_env = mini_cluster()
    table = t_env.from_elements([tuple(r[c] for c in CARD_INPUT) for r in rows], sql_row_type(CARD_INPUT))
    # one override for a rule without code: broadcast state in use, verdicts as with the defaults
    rules = t_env.from_elements([("no_such_rule", json.dumps({"enabled": False}))], RULES_ROW)
    flagged = card_anomalies(key_by_column(t_env.to_data_stream(table), "card_token"),
                             t_env.to_changelog_stream(rules), TINY, TERMINAL_WINDOW_MS)
    got = defaultdict(list)  # transaction id -> outputs in arrival order (a replayed id may have several)
    with flagged.execute_and_collect() as results:
        for result in results:
            out = dict(zip(ANOMALY_COLUMNS, tuple(result), strict=True))
            got[out["transaction_id"]].append(out)

    feats = expected(rows)
    features = pd.DataFrame.from_records(feats, columns=list(CARD_FEATURES))
    verdict = first_pass(pd.DataFrame(rows), features, DEFAULTS, TERMINAL_WINDOW_MS)
    want = defaultdict(list)
    for r, f, (suspect, severity) in zip(rows, feats, verdict.itertuples(index=False), strict=True):
        if severity is not None:
            key = f"terminal:{suspect}" if suspect is not None else f"card:{r['card_token']}"
            want[r["transaction_id"]].append({"first_severity": severity, "suspect_terminal": suspect,
                                              "terminal_key": key, "hist_n": f["hist_n"], "cnt_10m": f["cnt_10m"],
                                              "bank_id": r["bank_id"], "device_id": r["device_id"]})
    assert len(want) > 50 and {w["first_severity"] for ws in want.values() for w in ws} >= {"LOW", "HIGH"}
    assert any(w["suspect_terminal"] for ws in want.values() for w in ws)
    assert {t: len(o) for t, o in got.items()} == {t: len(w) for t, w in want.items()}
    mismatches = [(tid, name, out[name], w[name]) for tid, ws in want.items()
                  for w, out in zip(ws, got[tid], strict=True) for name in w if out[name] != w[name]]
    assert not mismatches, f"{len(mismatches)} differences, the first: {mismatches[:10]}"


def java_rules(overrides: dict[str, dict]):
    mini_cluster()  # puts the job's jars on the gateway's class path
    jvm = get_gateway().jvm
    texts = jvm.java.util.HashMap()
    for rule_id, override in overrides.items():
        texts.put(rule_id, json.dumps(override))
    return jvm.io.rtfd.flink.FirstPassRules.fromDefaults(DEFAULTS_FILE.read_text()).withOverrides(texts)


def test_jvm_rules_refuse_what_python_refuses():
    defaults = java_rules({})
    for rule_id, override in OVERRIDES:
        refusal = defaults.refusal(rule_id, json.dumps(override))
        assert (refusal is not None) == python_refuses(rule_id, override), (rule_id, override, refusal)
        if refusal is not None:
            assert refusal.startswith(f"{rule_id}: "), refusal  # names the rule, then the problem
    assert "not JSON" in defaults.refusal("velocity", "{enabled: false")
    assert "JSON object" in defaults.refusal("velocity", "[1, 2]")


@pytest.mark.parametrize("kept", [
    [],
    [0],
    [1, 2],
    [3, 4],
    [5],
    [0, 1, 2, 3, 4, 6],
])
def test_jvm_rules_give_the_reference_verdicts_under_overrides(kept):
    overrides = {OVERRIDES[i][0]: OVERRIDES[i][1] for i in kept}
    rules = java_rules(overrides)
    rows = hand_made() + simulated(n=1500)
    feats = expected(rows)  # plain values, None for null
    features = pd.DataFrame.from_records(feats, columns=list(CARD_FEATURES))
    want = first_pass(pd.DataFrame(rows), features, merge(DEFAULTS, overrides),
                      TERMINAL_WINDOW_MS)["first_severity"].tolist()
    def double(value):  # Python's sum of no logs is the int 0; Java wants a Double
        return None if value is None else float(value)

    got = [rules.firstSeverity(r["amount_eur"], r["device_id"], f["hist_n"], double(f["hist_sum_log"]),
                               double(f["hist_sumsq_log"]), double(f["hist_span_s"]), f["cnt_10m"], f["tiny_30m"],
                               double(f["distance_km"]), double(f["gap_s"]), f["device_uses"], f["device_hist"])
           for r, f in zip(rows, feats, strict=True)]
    assert sum(s is not None for s in want) > 20
    assert got == want


def test_the_rules_changelog_sets_resets_and_skips_halves_of_updates():
    mini_cluster()
    jvm = get_gateway().jvm
    kinds = jvm.org.apache.flink.types.RowKind

    def change(kind, rule_id, config):
        row = jvm.org.apache.flink.types.Row.withPositions(kinds.valueOf(kind), 2)
        row.setField(0, rule_id)
        row.setField(1, config)
        result = jvm.io.rtfd.flink.CardAnomalies.ruleChange(row)
        return None if result is None else list(result)

    assert change("INSERT", "velocity", '{"enabled": false}') == ["velocity", '{"enabled": false}']
    assert change("UPDATE_AFTER", "velocity", '{"version": 3}') == ["velocity", '{"version": 3}']
    assert change("UPDATE_BEFORE", "velocity", '{"enabled": false}') is None  # its UPDATE_AFTER follows
    assert change("DELETE", "velocity", '{"version": 3}') == ["velocity", None]  # a tombstone: the default again
    assert change("INSERT", None, "{}") is None and change("INSERT", "", "{}") is None
