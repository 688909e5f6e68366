"""`rtfd up` runs the Dagster webserver and daemon on the state folder's instance; status shows them and the UI
serves the lakehouse's asset graph (`down` stopping them is checked by the session fixture: no process of the
state folder may outlive it)."""

from __future__ import annotations

import httpx
import pytest

from rtfd import topology
from rtfd.stack import NativeStack

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]  # the first stack test pays the stack start


def test_status_shows_dagster_webserver_and_daemon_up(stack):
    components = {c["name"]: c for c in NativeStack(stack).status()["components"]}
    assert components["dagster-webserver"]["state"] == "up"
    assert components["dagster-webserver"]["port"] == stack.port(topology.DAGSTER_PORT)
    assert components["dagster-daemon"]["state"] == "up"
    assert (stack.state_dir / "dagster" / "dagster.yaml").exists()


def test_the_ui_serves_the_asset_graph_with_its_checks(stack):
    url = f"http://127.0.0.1:{stack.port(topology.DAGSTER_PORT)}/graphql"
    query = "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }"
    nodes = httpx.post(url, json={"query": query}, timeout=60).json()["data"]["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert {"staged_transactions", "lake_transactions", "marts/daily_kpis", "marts/rule_performance"} <= keys
    checks = {c["name"] for n in nodes for c in (n["assetChecksOrError"].get("checks") or [])}
    assert {"transactions_expectations", "alerts_expectations"} <= checks
