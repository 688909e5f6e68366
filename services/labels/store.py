"""Every query on the `fraud_labels` table (schemas/postgres/0004_fraud_labels.sql).

Functions take an open psycopg connection in autocommit mode (services.kafka_sink.connect); a write is one
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

from services.labels.label import FraudLabel

COLUMNS = ("transaction_id", "is_fraud", "scenario", "labelled_at", "source", "received_at")

# A label replaces the stored one only if it is not older; an identical one (a redelivery) changes nothing, not
# even received_at, and is not returned, so the consumer counts it as a duplicate.
_UPSERT = """
INSERT INTO fraud_labels AS l (transaction_id, is_fraud, scenario, labelled_at, source)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (transaction_id) DO UPDATE
   SET is_fraud = excluded.is_fraud, scenario = excluded.scenario, labelled_at = excluded.labelled_at,
       source = excluded.source, received_at = now()
 WHERE excluded.labelled_at >= l.labelled_at
   AND (excluded.labelled_at, excluded.is_fraud, excluded.scenario, excluded.source)
       IS DISTINCT FROM (l.labelled_at, l.is_fraud, l.scenario, l.source)
RETURNING transaction_id
"""


def upsert_labels(conn: psycopg.Connection, labels: Sequence[FraudLabel]) -> list[str]:
    """Store the labels in one transaction; return the transaction ids whose row was inserted or replaced.

    Of several labels for one transaction in `labels`, only the newest (the last of equals) is written, as the
    table would end up the same anyway."""
    newest: dict[str, FraudLabel] = {}
    for label in labels:
        kept = newest.get(label.transaction_id)
        if kept is None or label.labelled_at >= kept.labelled_at:
            newest[label.transaction_id] = label
    params = [(x.transaction_id, x.is_fraud, x.scenario, x.labelled_at, x.source) for x in newest.values()]
    changed: list[str] = []
    if not params:
        return changed
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT, params, returning=True)
        while True:
            changed.extend(row[0] for row in cur.fetchall())
            if not cur.nextset():
                break
    return changed


def get_label(conn: psycopg.Connection, transaction_id: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM fraud_labels WHERE transaction_id = %s",  # noqa: S608
            (transaction_id,),
        ).fetchone()


def count_labels(conn: psycopg.Connection) -> dict[str, int]:
    """Labels stored: `fraud`, `legit` and `total`."""
    fraud, total = conn.execute("SELECT count(*) FILTER (WHERE is_fraud), count(*) FROM fraud_labels").fetchone()
    return {"fraud": fraud, "legit": total - fraud, "total": total}
