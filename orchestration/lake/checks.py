"""Great Expectations suites on the staged extract, as Dagster asset checks (GE's results in the metadata).

The suites on transactions and alerts are blocking: a failure stops the lake partition in the same run, so
bad rows never reach Parquet. That every alert's transaction is archived is checked too, but as a warning:
the alert path (Kafka -> alert consumer) may store an alert a moment before the JDBC sink flushes its
transaction, and a later run of the partition then passes.
"""

import dagster as dg

from orchestration.lake.assets import STAGED, daily
from orchestration.resources import LakeResource
from warehouse import lake, validation


def _result(outcome: validation.Outcome, severity: dg.AssetCheckSeverity, rows: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=severity,
        description=outcome.summary(),
        metadata={
            "suite": outcome.suite,
            "rows": rows,
            "expectations": outcome.evaluated,
            "failed_expectations": len(outcome.failed),
            "failed": dg.MetadataValue.json(outcome.failed),
            "results": dg.MetadataValue.json(outcome.results),
        },
    )


@dg.asset_check(asset=STAGED["transactions"], blocking=True, partitions_def=daily,
                description="GE suite warehouse/expectations/transactions.json: unique ids, non-null keys, "
                            "amount_minor > 0, ISO currency/country, known channel, event_time inside the "
                            "partition, lat/lon in range.")
def transactions_expectations(context: dg.AssetCheckExecutionContext, lake_store: LakeResource):
    day = lake.parse_partition(context.partition_key)
    rows = lake.staged(lake_store.lake, "transactions", day)
    return _result(validation.validate("transactions", rows, day), dg.AssetCheckSeverity.ERROR, rows.num_rows)


@dg.asset_check(asset=STAGED["alerts"], blocking=True, partitions_def=daily,
                description="GE suite warehouse/expectations/alerts.json: unique alert ids, non-null keys, "
                            "score in [0, 1], known severity.")
def alerts_expectations(context: dg.AssetCheckExecutionContext, lake_store: LakeResource):
    day = lake.parse_partition(context.partition_key)
    rows = lake.staged(lake_store.lake, "alerts", day)
    return _result(validation.validate("alerts", rows, day), dg.AssetCheckSeverity.ERROR, rows.num_rows)


@dg.asset_check(asset=STAGED["alerts"], partitions_def=daily, additional_deps=[STAGED["transactions"]],
                description="GE suite warehouse/expectations/alert_references.json: every alert's transaction "
                            "is in the archive (same event date).")
def alerts_reference_archived_transactions(context: dg.AssetCheckExecutionContext, lake_store: LakeResource):
    day = lake.parse_partition(context.partition_key)
    alerts = validation.with_archive_flag(lake.staged(lake_store.lake, "alerts", day),
                                          lake.staged(lake_store.lake, "transactions", day))
    outcome = validation.validate("alert_references", alerts, day)
    return _result(outcome, dg.AssetCheckSeverity.WARN, alerts.num_rows)


CHECKS = [transactions_expectations, alerts_expectations, alerts_reference_archived_transactions]
