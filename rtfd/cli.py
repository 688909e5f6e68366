"""The `rtfd` command: run the native stack and every tool of the platform.

Subcommands owned by a service (produce, replay, labels) live beside that service and are loaded lazily,
so `rtfd logs` does not pay for importing Kafka clients.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import click

from rtfd import topology
from rtfd.config import Settings


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use ("name": "module:attribute")."""

    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx, cmd_name):
        if cmd_name in self.lazy_subcommands:
            module, attr = self.lazy_subcommands[cmd_name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy_subcommands={
        "produce": "services.producer.cli:produce",
        "replay": "services.replay.cli:replay",
        "labels": "services.replay.cli:labels",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli():
    """rtfd: real-time card fraud detection. `rtfd up` starts everything natively; `rtfd status` shows it."""


def _stack(progress: bool = True):
    from rtfd.stack import NativeStack

    return NativeStack(Settings(), progress=(lambda msg: click.echo(f"  {msg}")) if progress else None)


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


@cli.command()
@click.option("--brokers", type=click.IntRange(1, len(topology.BROKER_PORTS)), default=3, show_default=True,
              help="Kafka brokers beside the controller; 1 runs a single combined node (laptops, quick tests).")
@click.option("--bank", "banks", multiple=True, help="Bank to simulate (repeat for more). Default: bank-a, bank-b.")
@click.option("--extra-banks", type=int, default=0, help="Add N more simulated banks (bank-c, bank-d, ...).")
@click.option("--tps", type=int, default=20, show_default=True, help="Transactions per second per bank.")
@click.option("--no-producers", is_flag=True, help="Start the platform without simulated banks.")
def up(brokers, banks, extra_banks, tps, no_producers):
    """Start (or complete) the native stack: PostgreSQL, Kafka KRaft, schema registry, bank producers."""
    from rtfd.stack import StackError

    banks = tuple(banks) or topology.DEFAULT_BANKS
    banks += tuple(f"bank-{chr(ord('c') + i)}" for i in range(extra_banks))
    started = time.monotonic()
    click.echo(f"rtfd up: {brokers} broker(s) + controller, banks: {', '.join(banks) if not no_producers else 'none'}")
    try:
        _stack().up(brokers=brokers, banks=() if no_producers else banks, tps=tps)
    except StackError as exc:
        _fail(exc)
    click.echo(f"ready in {time.monotonic() - started:.0f}s")


@cli.command()
@click.option("--purge", is_flag=True, help="Also delete the state folder (Kafka data, database, logs).")
def down(purge):
    """Stop every component gracefully."""
    from rtfd.stack import StackError

    try:
        stopped = _stack().down(purge=purge)
    except StackError as exc:
        _fail(exc)
    click.echo(f"stopped {len(stopped)} component(s)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json):
    """Components, topics (partitions, in-sync replicas), consumer lag and row counts."""
    from rtfd.stack.status import render

    report = _stack(progress=False).status()
    click.echo(json.dumps(report, indent=2, default=str) if as_json else render(report))
    if any(c["state"] != "up" for c in report["components"]):
        sys.exit(3)


@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True)
def logs(name, follow, lines):
    """Print a component's log (kafka-1, registry, postgres, producer-bank-a, ...)."""
    from rtfd.stack import StackError

    try:
        proc = _stack(progress=False).component(name)
    except StackError as exc:
        _fail(exc)
    click.echo(proc.tail(lines))
    if follow:
        with open(proc.log_file, errors="replace") as fh:
            fh.seek(0, os.SEEK_END)
            try:
                while True:
                    line = fh.readline()
                    if line:
                        click.echo(line, nl=False)
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                pass


@cli.group()
def schemas():
    """The Avro contracts in schemas/avro."""


@schemas.command("register")
def schemas_register():
    """Register every contract version with the schema registry (idempotent)."""
    from schemas.registration import register_all

    for subject, ids in register_all(Settings().registry_conf()).items():
        click.echo(f"{subject}: schema ids {ids}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
