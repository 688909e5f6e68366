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
from pathlib import Path

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
        "alerts": "services.alerts.cli:alerts",
        "rules": "flink.rules.cli:rules",
        "lake": "rtfd.lake:lake_cli",
        "sql": "rtfd.lake:sql",
        "chaos": "rtfd.chaos.cli:chaos",
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
@click.option("--no-job", is_flag=True, help="Start the Flink cluster but do not submit the fraud job.")
@click.option("--no-flink", is_flag=True, help="Leave out the Flink cluster (and the job).")
def up(brokers, banks, extra_banks, tps, no_producers, no_job, no_flink):
    """Start (or complete) the native stack: PostgreSQL, Kafka KRaft, schema registry, Flink and its job,
    bank producers."""
    from rtfd.stack import StackError

    banks = tuple(banks) or topology.DEFAULT_BANKS
    banks += tuple(f"bank-{chr(ord('c') + i)}" for i in range(extra_banks))
    started = time.monotonic()
    click.echo(f"rtfd up: {brokers} broker(s) + controller, banks: {', '.join(banks) if not no_producers else 'none'}")
    try:
        _stack().up(brokers=brokers, banks=() if no_producers else banks, tps=tps, flink=not no_flink, job=not no_job)
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
def job():
    """The Flink fraud-detection job on the native cluster (submit, cancel, savepoint, status)."""


def _flink():
    return _stack(progress=False).flink


def _job_id(cluster, job_id: str | None, live: bool = True) -> str:
    from rtfd.stack import StackError
    from rtfd.stack.flink import JOB_NAME

    if job_id:
        return job_id
    found = cluster.find_job(JOB_NAME, live_only=live)
    if found is None:
        raise StackError(f"no {'live ' if live else ''}job named {JOB_NAME} on {cluster.url}; `rtfd job submit`")
    return found["jid"]


@job.command("submit")
@click.option("--from-savepoint", "savepoint", type=click.Path(exists=True), help="Restore from this savepoint "
              "or retained checkpoint folder.")
@click.option("--from-latest", is_flag=True, help="Restore from the newest savepoint or retained checkpoint "
              "under the state folder.")
@click.option("--allow-non-restored", is_flag=True, help="Skip saved state that no operator of the job claims.")
def job_submit(savepoint, from_latest, allow_non_restored):
    """Submit flink/job.py (nothing happens if the job is already live)."""
    from pathlib import Path

    from rtfd.stack import StackError
    from rtfd.stack.flink import JOB_FILE, JOB_NAME

    cluster = _flink()
    try:
        live = cluster.find_job(JOB_NAME, live_only=True)
        if live is not None:
            click.echo(f"{JOB_NAME} is already {live['state']} ({live['jid']}); nothing to do")
            return
        restore = Path(savepoint) if savepoint else cluster.latest_restore_point(JOB_NAME) if from_latest else None
        if from_latest and restore is None:
            click.echo("no savepoint or retained checkpoint found; starting with fresh state")
        click.echo(f"submitting {JOB_FILE}" + (f" from {restore}" if restore else ""))
        job_id = cluster.submit(JOB_FILE, JOB_NAME, restore, allow_non_restored)
        cluster.wait_running(job_id)
    except StackError as exc:
        _fail(exc)
    click.echo(f"{JOB_NAME} running: {job_id}  ({cluster.url}/#/job/running/{job_id}/overview)")


@job.command("cancel")
@click.option("--savepoint", "with_savepoint", is_flag=True, help="Stop with a final savepoint (restore later "
              "with --from-latest).")
@click.option("--job-id", help="Default: the live job named rtfd-fraud-detection.")
def job_cancel(with_savepoint, job_id):
    """Cancel the job (its retained checkpoints stay), or stop it with a savepoint."""
    from rtfd.stack import StackError

    cluster = _flink()
    try:
        job_id = _job_id(cluster, job_id)
        if with_savepoint:
            path = cluster.stop_with_savepoint(job_id)
            click.echo(f"stopped {job_id}; savepoint: {path}")
        else:
            cluster.cancel(job_id)
            click.echo(f"cancelled {job_id}")
    except StackError as exc:
        _fail(exc)


@job.command("savepoint")
@click.option("--job-id", help="Default: the live job named rtfd-fraud-detection.")
def job_savepoint(job_id):
    """Take a savepoint of the running job and print its folder."""
    from rtfd.stack import StackError

    cluster = _flink()
    try:
        path = cluster.savepoint(_job_id(cluster, job_id))
    except StackError as exc:
        _fail(exc)
    click.echo(str(path))


@job.command("status")
@click.option("--job-id", help="Default: the newest job named rtfd-fraud-detection.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def job_status(job_id, as_json):
    """State, uptime, tasks with parallelism, last checkpoint and restarts of the job."""
    import httpx

    from rtfd.stack import StackError
    from rtfd.stack.status import render_flink

    cluster = _flink()
    try:
        cluster.overview()
    except httpx.HTTPError:
        _fail(StackError(f"the Flink cluster is not reachable at {cluster.url}; `rtfd up`"))
    try:
        report = {**cluster.describe(), "job": cluster.job_status(_job_id(cluster, job_id, live=False))}
    except StackError as exc:
        _fail(exc)
    click.echo(json.dumps(report, indent=2, default=str) if as_json else "\n".join(render_flink(report)))
    if report["job"]["state"] != "RUNNING":
        sys.exit(3)


@cli.group()
def schemas():
    """The Avro contracts in schemas/avro."""


@schemas.command("register")
def schemas_register():
    """Register every contract version with the schema registry (idempotent)."""
    from schemas.registration import register_all

    for subject, ids in register_all(Settings().registry_conf()).items():
        click.echo(f"{subject}: schema ids {ids}")


@cli.command()
@click.option("--producers", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Producer processes driving the load.")
@click.option("--tps", type=float, default=2000, show_default=True,
              help="Total transactions/s across producers; 0 = as fast as they go.")
@click.option("--duration", type=float, default=60, show_default=True, help="Seconds of load.")
@click.option("--warmup", type=float, default=15, show_default=True, help="Seconds excluded from the figures.")
@click.option("--fraud-rate", type=float, default=0.005, show_default=True)
@click.option("--customers", type=click.IntRange(min=1), help="Customers (cards) per producer. Default: enough "
              "that each card pays about every 150 s at the asked rate (2,000 at max rate); a small world at a high "
              "rate makes every card pay every few seconds, and velocity fires on most rows.")
@click.option("--no-baseline", is_flag=True, help="Skip the raw Kafka produce+consume baseline.")
@click.option("--backlog", type=click.IntRange(min=1), help="Catch-up mode: stop the job with a savepoint, produce "
              "this many transactions, resubmit and measure how fast the job drains them (producers excluded).")
@click.option("--allow-non-restored", is_flag=True, help="Catch-up mode: resubmit even if the savepoint holds state "
              "no operator of the job claims (the running job was built from other code).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True)
def bench(producers, tps, duration, warmup, fraud_rate, customers, no_baseline, backlog, allow_non_restored, out_dir):
    """Measure the running native pipeline end to end (throughput, latency, zero loss) beside raw Kafka."""
    from rtfd.bench import BenchConfig, run_bench

    cfg = BenchConfig(producers=producers, tps=tps or None, duration=duration, warmup=warmup,
                      fraud_rate=fraud_rate, customers=customers, baseline=not no_baseline, out_dir=out_dir)
    if backlog:
        from rtfd.bench.catchup import markdown as catchup_markdown
        from rtfd.bench.catchup import run_catchup

        result = run_catchup(Settings(), cfg, backlog, say=click.echo, allow_non_restored=allow_non_restored)
        click.echo(catchup_markdown(result))
        sys.exit(0 if result["zero_loss"]["ok"] else 1)
    result = run_bench(Settings(), cfg, say=click.echo)
    from rtfd.bench.report import markdown

    click.echo(markdown(result))
    if not result["zero_loss"]["ok"]:
        click.secho("zero-loss check FAILED: delivered transactions are missing from the archive", fg="red", err=True)
        sys.exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
