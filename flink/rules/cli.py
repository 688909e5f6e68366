"""`rtfd rules list | set RULE_ID key=value ... | disable RULE_ID | reset RULE_ID`: live rule configuration.

Rules are data in the compacted `fraud-rules` topic (key = rule id, value = the rule's JSON config). The
running job tails that topic, so a change applies within about a second, without a restart.
"""

from __future__ import annotations

import json

import click

from flink.rules.config import RuleError, RuleFeed, apply_override, load_defaults
from rtfd import topology
from rtfd.config import Settings


def current_rules(settings: Settings, topic: str, timeout: float = 15.0):
    feed = RuleFeed(settings.kafka_client_conf(principal="admin"), topic).start()
    try:
        if not feed.wait_caught_up(timeout):
            raise click.ClickException(f"could not read {topic} within {timeout:.0f}s")
        return dict(feed.rules)
    finally:
        feed.stop()


def publish(settings: Settings, topic: str, rule_id: str, value: dict | None) -> None:
    from confluent_kafka import Producer

    errors: list[str] = []
    producer = Producer(settings.kafka_producer_conf(principal="admin"))
    payload = None if value is None else json.dumps(value, sort_keys=True).encode()
    producer.produce(topic, key=rule_id.encode(), value=payload,
                     on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    if producer.flush(15) or errors:
        raise click.ClickException(f"publishing {rule_id} to {topic} failed: {errors or 'timeout'}")


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return params


@click.group("rules")
@click.option("--topic", default=topology.FRAUD_RULES, show_default=True, help="Rules topic.")
@click.pass_context
def rules(ctx, topic):
    """Fraud rules of the running Flink job: list them, change them live."""
    ctx.obj = {"topic": topic, "settings": Settings()}


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_rules(obj, as_json):
    """The effective rules: defaults merged with the topic's overrides."""
    effective = current_rules(obj["settings"], obj["topic"])
    if as_json:
        click.echo(json.dumps([r.to_json() for r in effective.values()], indent=2))
        return
    for rule in effective.values():
        state = "on " if rule.enabled else "off"
        params = " ".join(f"{k}={v}" for k, v in rule.params.items())
        click.echo(f"{state} {rule.id}@{rule.version} {rule.severity:<8} {params}")


@rules.command("set")
@click.argument("rule_id")
@click.argument("assignments", nargs=-1)
@click.option("--enable/--disable", default=None, help="Switch the rule on or off.")
@click.option("--severity", type=click.Choice(["LOW", "MEDIUM", "HIGH", "CRITICAL"]))
@click.option("--reason", help="New reason template ({feature} placeholders).")
@click.pass_obj
def set_rule(obj, rule_id, assignments, enable, severity, reason):
    """Change RULE_ID's params (key=value ...), state, severity or reason; publishes version+1."""
    effective = current_rules(obj["settings"], obj["topic"])
    if rule_id not in effective:
        raise click.BadParameter(f"unknown rule {rule_id!r}; known: {', '.join(effective)}", param_hint="RULE_ID")
    rule = effective[rule_id]
    change: dict = {"params": parse_assignments(assignments)}
    if enable is not None:
        change["enabled"] = enable
    if severity:
        change["severity"] = severity
    if reason:
        change["reason"] = reason
    change["version"] = rule.version + 1
    try:
        updated = apply_override(rule, change)
    except RuleError as exc:
        raise click.ClickException(str(exc)) from None
    publish(obj["settings"], obj["topic"], rule_id, updated.to_json())
    click.echo(f"{rule_id}@{updated.version} published: enabled={updated.enabled} severity={updated.severity} "
               f"params={dict(updated.params)}")


@rules.command("disable")
@click.argument("rule_id")
@click.pass_context
def disable(ctx, rule_id):
    """Switch RULE_ID off (same as `set RULE_ID --disable`)."""
    ctx.invoke(set_rule, rule_id=rule_id, assignments=(), enable=False, severity=None, reason=None)


@rules.command("reset")
@click.argument("rule_id")
@click.pass_obj
def reset(obj, rule_id):
    """Back to the default from defaults.json (a tombstone on the topic)."""
    if rule_id not in load_defaults():
        raise click.BadParameter(f"unknown rule {rule_id!r}", param_hint="RULE_ID")
    publish(obj["settings"], obj["topic"], rule_id, None)
    click.echo(f"{rule_id} reset to its default")
