"""`rtfd chaos SCENARIO|all`: run fault-injection scenarios against the running native stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rtfd.chaos.scenarios import SCENARIOS


@click.command("chaos")
@click.argument("scenario", type=click.Choice([*SCENARIOS, "all"]))
@click.option("--duration", type=click.FloatRange(min=2), help="Seconds of load around the fault (half before, "
              "half after recovery). Default 60, or 12 with --short.")
@click.option("--tps", type=click.FloatRange(min=1), help="Transactions/s of the load. Default 200, 100 with --short.")
@click.option("--short", is_flag=True, help="The test suite's version: shorter outages, fewer bad records.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench-results/chaos"), show_default=True, help="Where the JSON report goes.")
@click.option("--json", "as_json", is_flag=True, help="Print the full JSON report instead of the table.")
def chaos(scenario, duration, tps, short, out_dir, as_json):
    """Inject a fault while load runs, then reconcile: zero lost or duplicated transactions, no duplicated
    or lost alert, every component healthy again within the scenario's bound. Exits 1 on FAIL.

    Scenarios: broker, taskmanager, postgres, registry, bad-input, alert-consumer (see docs/reliability.md).
    Runs against the stack of RTFD_STATE_DIR / RTFD_PORT_OFFSET, which `rtfd up` must have started."""
    from rtfd.chaos import report as reports
    from rtfd.chaos.runner import ChaosConfig, run_scenario
    from rtfd.config import Settings
    from rtfd.stack import StackError

    overrides = {k: v for k, v in (("duration", duration), ("tps", tps)) if v is not None}
    cfg = ChaosConfig.for_tests(**overrides) if short else ChaosConfig(**overrides)
    names = list(SCENARIOS) if scenario == "all" else [scenario]
    results = []
    try:
        for name in names:
            result = run_scenario(Settings(), SCENARIOS[name], cfg, say=lambda m: click.echo(m, err=True))
            results.append(result)
            click.echo(f"  {name}: {'PASS' if result['passed'] else 'FAIL: ' + '; '.join(reports.failures(result))}",
                       err=True)
    except StackError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    finally:
        if results:
            click.echo(f"report: {reports.write(results, out_dir, cfg.run_id)}", err=True)
    click.echo(json.dumps(results, indent=2, default=str) if as_json else reports.table(results))
    if not all(r["passed"] for r in results):
        sys.exit(1)
