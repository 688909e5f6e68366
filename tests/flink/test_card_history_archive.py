"""Card histories loaded from the real archive (flink.features.archive_loader), as the job's card_anomalies
UDF does when it first sees a card after a start, on a table of the stack's PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from flink.features import ARCHIVE_ROWS_PER_CARD, HISTORY_ROWS, TX, CardCache, archive_loader

pytestmark = pytest.mark.stack
MIN = 60_000
T0 = 1_790_000_000_000


@pytest.fixture
def archive(stack):
    table = f"archive_cards_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (LIKE transactions INCLUDING ALL)")
        rows = [(f"a-{i}", "a", T0 + i * MIN, 120 if i % 2 else 2000, "dev-a" if i % 3 else None,
                 52.5 if i == 0 else None, 13.4 if i == 0 else None, "POS" if i == 0 else "ECOM")
                for i in range(ARCHIVE_ROWS_PER_CARD + 40)]
        rows.append(("b-0", "b", T0, 100, None, None, None, "ECOM"))
        with conn.cursor().copy(f"COPY {table} (transaction_id, card_token, event_time, amount_minor, device_id, "
                                "lat, lon, channel, bank_id, customer_id, merchant_id, terminal_id, mcc, currency, "
                                "country, ingested_at) FROM STDIN") as copy:
            for tx, card, t, amount, device, lat, lon, channel in rows:
                copy.write_row((tx, card, datetime.fromtimestamp(t / 1000, UTC), amount, device, lat, lon, channel,
                                "bank", "cust", "m", "T-1", "5411", "EUR", "DE", datetime.now(UTC)))
        if stack.managed_postgres:
            conn.execute(f"GRANT SELECT ON {table} TO rtfd_flink")
    yield table
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table}")


def test_a_card_first_seen_gets_its_archived_history(stack, archive):
    load = archive_loader(stack.component_dsn("flink"), archive, 2.5)  # the job's own role
    histories = load(["a", "b", "never-seen"])
    assert set(histories) == {"a", "b"}
    a = histories["a"]
    assert len(a.entries) <= ARCHIVE_ROWS_PER_CARD and a.entries[-1][TX] == f"a-{ARCHIVE_ROWS_PER_CARD + 39}"
    assert a.devices["dev-a"] == sum(1 for i in range(ARCHIVE_ROWS_PER_CARD + 40) if i % 3)  # lifetime count
    assert a.last_pos == (T0, "T-1") and a.last_geo == (T0, 52.5, 13.4)  # older than the rows loaded

    cache = CardCache(load, 2.5)
    now = T0 + (ARCHIVE_ROWS_PER_CARD + 45) * MIN
    (f,) = cache.features([{"transaction_id": "a-new", "card_token": "a", "event_ms": now, "amount_eur": 5000.0,
                            "device_id": "dev-a", "lat": 48.1, "lon": 11.6, "channel": "POS", "terminal_id": "T-2"}])
    assert f["hist_n"] == HISTORY_ROWS and f["device_uses"] == a.devices["dev-a"] + 1  # this one too
    assert f["prev_pos_terminal"] == "T-1" and f["distance_km"] > 400  # Berlin (the archive) -> Munich
