"""Rule config as data: defaults, overrides merged key by key, tombstones, and what is rejected."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flink.rules import cli
from flink.rules.config import RuleError, RuleFeed, apply_override, load_defaults, merge, parse_record
from flink.rules.engine import RULES

DEFAULTS = load_defaults()


def test_every_default_rule_has_engine_code_and_a_complete_config():
    assert set(DEFAULTS) == set(RULES)
    for rule in DEFAULTS.values():
        assert rule.version >= 1 and rule.severity in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
        assert rule.params and rule.reason and rule.summary


def test_override_merges_params_and_keeps_types():
    rule = apply_override(DEFAULTS["velocity"], {"version": 3, "params": {"min_count": "12"}, "severity": "MEDIUM"})
    assert rule.version == 3 and rule.severity == "MEDIUM"
    assert rule.params["min_count"] == 12 and isinstance(rule.params["min_count"], int)
    assert rule.params["max_poisson_p"] == DEFAULTS["velocity"].params["max_poisson_p"]
    assert DEFAULTS["velocity"].params["min_count"] == 8  # defaults untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"params": {"nope": 1}}, "unknown param 'nope'"),
        ({"params": {"min_count": "many"}}, "param min_count must be like 8"),
        ({"severity": "URGENT"}, "severity must be one of"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"colour": "red"}, "unknown field(s) ['colour']"),
    ],
)
def test_invalid_overrides_are_rejected_with_a_reason(override, message):
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        apply_override(DEFAULTS["velocity"], override)


def test_merge_skips_unknown_rules_and_invalid_configs():
    rules = merge(DEFAULTS, {"nope": {"enabled": False}, "velocity": {"severity": "URGENT"},
                             "card_testing": {"enabled": False}})
    assert "nope" not in rules and rules["velocity"] == DEFAULTS["velocity"]
    assert rules["card_testing"].enabled is False


def test_feed_applies_records_and_tombstones_restore_defaults():
    feed = RuleFeed({"bootstrap.servers": "unused:9092"}, "fraud-rules", DEFAULTS)
    feed.apply(b"velocity", json.dumps({"version": 2, "enabled": False}).encode())
    assert feed.rules["velocity"].enabled is False and feed.rules["velocity"].version == 2
    feed.apply(b"velocity", b"not json")  # ignored: the last good config stays
    feed.apply(b"velocity", json.dumps({"severity": "URGENT"}).encode())
    assert feed.rules["velocity"].enabled is False
    feed.apply(b"velocity", None)
    assert feed.rules["velocity"] == DEFAULTS["velocity"]


def test_parse_record():
    assert parse_record(None, b"{}") is None
    assert parse_record(b"velocity", None) == ("velocity", None)
    assert parse_record(b"velocity", b"[1]") is None


def test_cli_set_publishes_incremented_version(monkeypatch):
    published = []
    monkeypatch.setattr(cli, "current_rules", lambda settings, topic: dict(DEFAULTS))
    monkeypatch.setattr(cli, "publish",
                        lambda settings, topic, rule_id, value: published.append((topic, rule_id, value)))
    result = CliRunner().invoke(cli.rules, ["--topic", "t", "set", "velocity", "min_count=12", "--disable"])
    assert result.exit_code == 0, result.output
    topic, rule_id, value = published[0]
    assert (topic, rule_id, value["version"], value["enabled"]) == ("t", "velocity", 2, False)
    assert value["params"]["min_count"] == 12
    bad = CliRunner().invoke(cli.rules, ["set", "velocity", "min_count"])
    assert bad.exit_code != 0 and "key=value" in bad.output
    assert CliRunner().invoke(cli.rules, ["reset", "velocity"]).exit_code == 0
    assert published[-1][2] is None
