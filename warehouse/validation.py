"""Great Expectations suites (expectations/*.json) run on one staged partition, offline.

GE runs in an ephemeral context (nothing written, no GE Cloud, analytics off) on a pandas DataFrame; the
result comes back as a plain summary dict (success, and per expectation its observed result) for Dagster's
check metadata and for people.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc

from warehouse import EXPECTATIONS_DIR
from warehouse.lake import partition_bounds

# before GE is imported: no usage statistics, no network
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("GE_USAGE_STATS", "False")


@dataclass(frozen=True)
class Outcome:
    suite: str
    success: bool
    evaluated: int
    failed: list[dict]
    results: list[dict]

    def summary(self) -> str:
        if self.success:
            return f"{self.suite}: all {self.evaluated} expectations met"
        return f"{self.suite}: {len(self.failed)} of {self.evaluated} expectations failed: " + "; ".join(
            f"{f['expectation']}({f.get('column')}) unexpected={f.get('unexpected_count')}" for f in self.failed
        )


@cache
def code_lists() -> dict[str, list[str]]:
    import pycountry

    return {
        "currencies": sorted(c.alpha_3 for c in pycountry.currencies),
        "countries": sorted(c.alpha_2 for c in pycountry.countries),
    }


def load_suite(name: str) -> dict:
    path = EXPECTATIONS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite {name!r} in {EXPECTATIONS_DIR}")
    return json.loads(path.read_text())


@cache
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # logs, not terminal bars
    return context


def validate(suite_name: str, rows: pa.Table, day: date) -> Outcome:
    """Validate a partition's rows against a suite; the partition's bounds and code lists are its parameters."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    spec = load_suite(suite_name)
    context = _context()
    suite = gx.ExpectationSuite(name=f"{spec['name']}-{day.isoformat()}")
    for exp in spec["expectations"]:
        suite.add_expectation_configuration(ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"]))
    source_name = f"rtfd-{suite_name}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
    asset_name = "partition"
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch_def = asset.get_batch_definition("whole")
    except (KeyError, ValueError, LookupError):
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
    df = rows.to_pandas(timestamp_as_object=False)
    start, end = partition_bounds(day)
    params = {**code_lists(), "partition_start": start, "partition_end": end}
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite, expectation_parameters=params, result_format="SUMMARY")
    results = [_result(r) for r in result.results]
    return Outcome(spec["name"], bool(result.success), len(results), [r for r in results if not r["success"]],
                   results)


def _result(r) -> dict:
    cfg = r.expectation_config
    res = r.result or {}
    out = {"expectation": cfg.type, "column": cfg.kwargs.get("column"), "success": bool(r.success)}
    for key in ("element_count", "unexpected_count", "unexpected_percent", "missing_count"):
        if key in res and res[key] is not None:
            out[key] = res[key]
    if res.get("partial_unexpected_list"):
        out["unexpected_examples"] = [str(v) for v in res["partial_unexpected_list"][:5]]
    if r.exception_info and r.exception_info.get("raised_exception"):
        out["exception"] = str(r.exception_info.get("exception_message"))[:300]
    return out


def with_archive_flag(alerts: pa.Table, transactions: pa.Table) -> pa.Table:
    """The alerts plus transaction_archived: whether each alert's transaction is in the partition's archive."""
    present = pc.is_in(alerts["transaction_id"], value_set=transactions["transaction_id"])
    return alerts.append_column("transaction_archived", pc.fill_null(present, False))
