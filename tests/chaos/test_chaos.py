"""The short chaos set: every `rtfd chaos` scenario against the session's real stack, asserting zero loss.

Each run is bounded (about 12 s of load at 100 tx/s around the fault, shorter outages than the full version,
recovery bounds twice the full version's: `ChaosConfig.for_tests()`) and undoes its fault itself, also when a
check fails, so the next test starts from a whole stack. Each report (with log tails when it failed) is written
to test-artifacts/chaos/. The full versions and their figures are in docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtfd.chaos.report import failures
from rtfd.chaos.report import write as write_report
from rtfd.chaos.runner import ChaosConfig, run_scenario
from rtfd.chaos.scenarios import SCENARIOS
from rtfd.config import Settings
from rtfd.stack import NativeStack

# One scenario is bounded by its waits (pipeline flowing, twice the recovery bound, the drain), 2-6 minutes
# when it passes on a loaded 2-core machine; the first test also carries the session stack's start (9 minutes
# there at load average 40), which pytest-timeout counts against it.
pytestmark = [pytest.mark.timeout(1800), pytest.mark.chaos]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos"


@pytest.fixture(scope="module")
def chaos_stack(stack: Settings, flink_job_enabled: bool) -> Settings:
    assert flink_job_enabled, "the chaos tests need the fraud job: run them without RTFD_TEST_FLINK_JOB=0"
    return stack


def run(settings: Settings, name: str) -> dict:
    report = run_scenario(settings, SCENARIOS[name], ChaosConfig.for_tests(), say=print)
    print({k: report[k] for k in ("phases", "counts", "info", "seconds")})
    # kept for a look after a CI run: the session stack's state folder (and its logs) is removed at the end
    write_report([report], ARTIFACTS, name)
    if not report["passed"]:
        stack = NativeStack(settings)
        report["log_tails"] = {p.name: p.tail(40) for p in (stack.supervisor(), *stack.components())}
        write_report([report], ARTIFACTS, name)
    return report


def assert_passed(report: dict) -> None:
    assert report["passed"], (f"{report['scenario']} failed: {failures(report)}; counts: {report['counts']}; "
                              f"phases: {report['phases']}; report and log tails in {ARTIFACTS}")
    assert report["counts"]["delivered"] > 0 and report["counts"]["missing"] == 0


def assert_whole(settings: Settings, report: dict) -> None:
    """The scenario undid its fault: every component that ran before it runs again."""
    running = {p.name for p in NativeStack(settings).components() if p.is_running()}
    assert set(report["info"]["components"]) <= running


@pytest.mark.parametrize("name", ["broker", "postgres", "registry", "alert-consumer"])
def test_component_fault_loses_nothing(chaos_stack: Settings, name: str):
    report = run(chaos_stack, name)
    assert_whole(chaos_stack, report)
    assert_passed(report)


def test_taskmanager_killed_mid_stream_job_recovers_from_checkpoint(chaos_stack: Settings):
    """Issue #3: TaskManager killed mid-stream, the job recovers: archived ids == produced ids, no duplicate
    transaction_id, no duplicate alert."""
    report = run(chaos_stack, "taskmanager")
    assert_whole(chaos_stack, report)
    assert_passed(report)
    counts = report["counts"]
    assert counts["archived"] == counts["delivered"] and counts["duplicate_archive_rows"] == 0
    assert counts["duplicate_alerts"] == 0
    assert report["info"]["job_restarts"] is None or report["info"]["job_restarts"] >= 1


def test_bad_input_is_dead_lettered_and_good_input_archived(chaos_stack: Settings):
    report = run(chaos_stack, "bad-input")
    assert_passed(report)
    injected, counts = report["injected"], report["counts"]
    assert injected["accepted"] and set(injected["accepted"]) <= set(counts["dlq_keys"])
    assert set(injected["refused"]) == set(injected["over_limit"])  # Kafka refuses what exceeds 1 MB
    assert counts["bad_archived"] == 0
