"""The live rule set: defaults.json merged with overrides read from the compacted `fraud-rules` topic.

Topic records: key = rule id (UTF-8), value = JSON {"version", "enabled", "severity", "params", "reason"}
(any subset; params merge key by key over the defaults); a tombstone (null value) puts the rule back to its
default. `RuleFeed` tails the topic on a background thread and swaps in a new immutable snapshot per change,
so evaluation always reads a consistent rule set without locks. See docs/rules.md for the trade-offs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

log = logging.getLogger(__name__)

DEFAULTS_FILE = Path(__file__).with_name("defaults.json")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    enabled: bool
    severity: str
    params: Mapping[str, float | int | str | bool] = field(default_factory=dict)
    reason: str = ""
    summary: str = ""

    def to_json(self) -> dict:
        return {"id": self.id, "version": self.version, "enabled": self.enabled, "severity": self.severity,
                "params": dict(self.params), "reason": self.reason}


class RuleError(ValueError):
    """A rule config that cannot be applied; the message says which field and why."""


def load_defaults(path: Path = DEFAULTS_FILE) -> dict[str, Rule]:
    raw = json.loads(path.read_text())
    return {rule_id: _rule(rule_id, spec) for rule_id, spec in raw.items()}


def _rule(rule_id: str, spec: Mapping) -> Rule:
    return Rule(rule_id, int(spec["version"]), bool(spec["enabled"]), spec["severity"],
                MappingProxyType(dict(spec.get("params", {}))), spec.get("reason", ""), spec.get("summary", ""))


def apply_override(base: Rule, override: Mapping) -> Rule:
    """base with the override's fields; params merge key by key and keep the default's type."""
    if not isinstance(override, Mapping):
        raise RuleError(f"{base.id}: rule config must be a JSON object")
    unknown = set(override) - {"id", "version", "enabled", "severity", "params", "reason", "summary"}
    if unknown:
        raise RuleError(f"{base.id}: unknown field(s) {sorted(unknown)}")
    severity = override.get("severity", base.severity)
    if severity not in SEVERITIES:
        raise RuleError(f"{base.id}: severity must be one of {'/'.join(SEVERITIES)} (got {severity!r})")
    params = dict(base.params)
    for key, value in dict(override.get("params") or {}).items():
        if key not in params:
            raise RuleError(f"{base.id}: unknown param {key!r}; known: {sorted(params)}")
        params[key] = coerce(base.id, key, value, params[key])
    enabled = override.get("enabled", base.enabled)
    if not isinstance(enabled, bool):
        raise RuleError(f"{base.id}: enabled must be true or false (got {enabled!r})")
    try:
        version = int(override.get("version", base.version))
    except (TypeError, ValueError):
        raise RuleError(f"{base.id}: version must be an integer (got {override.get('version')!r})") from None
    return replace(base, version=version, enabled=enabled, severity=severity,
                   params=MappingProxyType(params), reason=str(override.get("reason", base.reason)))


def coerce(rule_id: str, key: str, value, default):
    """A param value (maybe a CLI string) to the type of its default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int) and not (isinstance(value, float) and not value.is_integer()):
            number = float(value)
            if not number.is_integer():
                return number  # 2.5 for an int default: keep the precision the analyst asked for
            return int(number)
        if isinstance(default, float | int):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise RuleError(f"{rule_id}: param {key} must be like {default!r} (got {value!r})") from None


def merge(defaults: Mapping[str, Rule], overrides: Mapping[str, Mapping]) -> dict[str, Rule]:
    """Effective rules. An override for an unknown rule id is ignored (the engine has no code for it)."""
    rules = dict(defaults)
    for rule_id, override in overrides.items():
        if rule_id not in defaults:
            log.warning("ignoring config for unknown rule %r", rule_id)
            continue
        try:
            rules[rule_id] = apply_override(defaults[rule_id], override)
        except RuleError as exc:
            log.error("ignoring invalid config: %s", exc)
    return rules


def parse_record(key: bytes | None, value: bytes | None) -> tuple[str, dict | None] | None:
    """(rule id, override or None for a tombstone); None when the record is unusable."""
    if not key:
        return None
    rule_id = key.decode("utf-8", errors="replace")
    if value is None:
        return rule_id, None
    try:
        override = json.loads(value)
    except ValueError:
        log.error("fraud-rules record for %s is not JSON; ignored", rule_id)
        return None
    return (rule_id, override) if isinstance(override, dict) else None


class RuleFeed:
    """Keeps the newest rule set from the rules topic in memory (a background consumer thread).

    No consumer group offsets: every instance assigns all partitions from the beginning, reads the
    compacted topic to its end (the current rule set), then tails it. `rules` is always a complete snapshot.
    """

    def __init__(self, kafka_conf: Mapping[str, str], topic: str, defaults: Mapping[str, Rule] | None = None,
                 poll_s: float = 0.2):
        self.kafka_conf = dict(kafka_conf)  # bootstrap.servers and, when Kafka is secure, the SASL settings
        self.topic = topic
        self.defaults = dict(defaults or load_defaults())
        self.overrides: dict[str, dict] = {}
        self.rules: Mapping[str, Rule] = MappingProxyType(dict(self.defaults))
        self.poll_s = poll_s
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RuleFeed:
        self._thread = threading.Thread(target=self._run, name=f"rule-feed-{self.topic}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        parsed = parse_record(key, value)
        if parsed is None:
            return
        rule_id, override = parsed
        if override is None:
            self.overrides.pop(rule_id, None)
        else:
            if rule_id in self.defaults:
                try:
                    apply_override(self.defaults[rule_id], override)
                except RuleError as exc:
                    log.error("ignoring invalid config: %s", exc)
                    return
            self.overrides[rule_id] = override
        self.rules = MappingProxyType(merge(self.defaults, self.overrides))
        log.info("rule %s now %s", rule_id, self.rules.get(rule_id))

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        while not self._stop.is_set():
            consumer = None
            try:
                consumer = Consumer({
                    **self.kafka_conf,
                    "group.id": f"rtfd-rules-{uuid.uuid4().hex[:8]}",  # never committed: assign(), not subscribe()
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                })
                meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                if meta is None or meta.error is not None or not meta.partitions:
                    raise RuntimeError(f"rules topic {self.topic} not available: {meta and meta.error}")
                parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions]
                consumer.assign(parts)
                at_end: set[int] = set()
                while not self._stop.is_set():
                    msg = consumer.poll(self.poll_s)
                    if msg is None:
                        continue
                    if msg.error() is not None:
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            at_end.add(msg.partition())
                            if len(at_end) == len(parts):
                                self.caught_up.set()
                            continue
                        log.warning("rules topic: %s", msg.error())
                        continue
                    self.apply(msg.key(), msg.value())
            except Exception as exc:  # noqa: BLE001 - keep serving the last good snapshot, retry
                log.warning("rule feed for %s failed (%s); retrying with the last known rules", self.topic, exc)
                self.caught_up.set()  # do not block evaluation on an unavailable topic
                time.sleep(2.0)
            finally:
                if consumer is not None:
                    consumer.close()

    def wait_caught_up(self, timeout: float = 15.0) -> bool:
        return self.caught_up.wait(timeout)
