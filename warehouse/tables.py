"""The archive tables as the lake stores them: one Arrow schema per table (the lake's contract, whatever the
PostgreSQL driver infers) and the query that extracts one event-date partition of each.

Every table is partitioned by the *transaction's* event date: alerts carry the event_time of their
transaction, labels are joined to theirs, so one partition holds a day's transactions with their alerts and
labels, and referential checks can run inside a partition.
"""

from __future__ import annotations

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "transactions": pa.schema([
        ("transaction_id", pa.string()), ("event_time", UTC_TS), ("bank_id", pa.string()),
        ("customer_id", pa.string()), ("card_token", pa.string()), ("merchant_id", pa.string()),
        ("terminal_id", pa.string()), ("mcc", pa.string()), ("amount_minor", pa.int64()),
        ("currency", pa.string()), ("channel", pa.string()), ("country", pa.string()),
        ("lat", pa.float64()), ("lon", pa.float64()), ("device_id", pa.string()), ("schema_version", pa.int16()),
        ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()), ("ingested_at", UTC_TS),
        ("processed_at", UTC_TS),
    ]),
    "alerts": pa.schema([
        ("alert_id", pa.string()), ("transaction_id", pa.string()), ("card_token", pa.string()),
        ("customer_id", pa.string()), ("bank_id", pa.string()), ("rules", pa.list_(pa.string())),
        ("score", pa.float64()), ("severity", pa.string()), ("reasons", pa.list_(pa.string())),
        ("amount_minor", pa.int64()), ("currency", pa.string()), ("event_time", UTC_TS), ("detected_at", UTC_TS),
        ("stored_at", UTC_TS), ("status", pa.string()), ("triaged_at", UTC_TS),
    ]),
    # bank_id comes from the labelled transaction (labels themselves do not name a bank)
    "fraud_labels": pa.schema([
        ("transaction_id", pa.string()), ("bank_id", pa.string()), ("is_fraud", pa.bool_()),
        ("scenario", pa.string()), ("labelled_at", UTC_TS), ("source", pa.string()), ("received_at", UTC_TS),
    ]),
}  # fmt: skip

PRIMARY_KEYS = {"transactions": "transaction_id", "alerts": "alert_id", "fraud_labels": "transaction_id"}
TABLES = tuple(SCHEMAS)


def _columns(table: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in SCHEMAS[table].names)


# $1, $2: the partition's [start, end) as ISO timestamps; the Flink job writes the archive in UTC
EXTRACT_SQL: dict[str, str] = {
    "transactions": f"SELECT {_columns('transactions', 't')} FROM transactions t "
                    "WHERE t.event_time >= $1::timestamptz AND t.event_time < $2::timestamptz",
    "alerts": f"SELECT {_columns('alerts', 'a')} FROM alerts a "
              "WHERE a.event_time >= $1::timestamptz AND a.event_time < $2::timestamptz",
    "fraud_labels": "SELECT l.transaction_id, t.bank_id, l.is_fraud, l.scenario, l.labelled_at, l.source, "
                    "l.received_at FROM fraud_labels l JOIN transactions t USING (transaction_id) "
                    "WHERE t.event_time >= $1::timestamptz AND t.event_time < $2::timestamptz",
}  # fmt: skip


def empty(table: str) -> pa.Table:
    return SCHEMAS[table].empty_table()


def conform(table: str, data: pa.Table) -> pa.Table:
    """The extracted columns in the lake's order and types (char(3) -> string, timestamptz -> UTC us)."""
    schema = SCHEMAS[table]
    missing = [c for c in schema.names if c not in data.column_names]
    if missing:
        raise ValueError(f"extract of {table} lacks column(s) {missing}; the archive schema changed?")
    return data.select(schema.names).cast(schema)
