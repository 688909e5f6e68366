"""The lake benchmark's synthetic rows (warehouse/synth.py) have the shape the benchmark's figures depend on:
archived in event-time order, one bank per customer, local merchants, few cards; alerts and labels point at
transactions of the run."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import synth

DAYS = [date(2026, 2, 1) + timedelta(days=i) for i in range(3)]


def run_tables(total: int = 40_000, chunk: int = 15_000) -> dict[str, pa.Table]:
    rng = np.random.default_rng(7)
    parts = [synth.chunk_tables("t", start, min(chunk, total - start), total, DAYS, 4, rng)
             for start in range(0, total, chunk)]
    return {name: pa.concat_tables(p[name] for p in parts) for name in parts[0]}


def test_rows_come_in_event_time_order_over_the_days():
    tx = run_tables()["transactions"]
    events = tx["event_time"].to_numpy()
    # within a second of jitter, each row is later than the one before; a day's rows are neighbours
    assert (np.diff(events.astype("int64")) > -1_000_000).all()
    days = events.astype("datetime64[D]")
    assert set(days.tolist()) == set(DAYS)
    assert (np.diff(days.astype("int64")) >= 0).all()
    counts = np.unique(days, return_counts=True)[1]
    assert counts.min() > 0.3 * len(tx) and counts.max() < 0.36 * len(tx)


def test_customers_belong_to_one_bank_and_shop_locally():
    tx = run_tables()["transactions"]
    per_customer = tx.group_by("customer_id").aggregate([
        ("bank_id", "count_distinct"), ("card_token", "count_distinct"), ("merchant_id", "count_distinct"),
        ("country", "count_distinct"), ("transaction_id", "count"),
    ])  # fmt: skip
    assert pc.max(per_customer["bank_id_count_distinct"]).as_py() == 1
    assert pc.max(per_customer["card_token_count_distinct"]).as_py() <= 2
    assert pc.max(per_customer["merchant_id_count_distinct"]).as_py() <= 15  # 10 local + 5 online shops
    # a merchant is a customer's local one, or an online shop
    online = pc.is_in(tx["channel"], pa.array(["ECOM", "MOBILE"]))
    numbers = pc.cast(pc.utf8_slice_codeunits(tx["merchant_id"], 1), pa.int64())
    assert pc.all(pc.equal(online, pc.greater_equal(numbers, synth.LOCAL_MERCHANTS))).as_py()


def test_alerts_and_labels_point_at_transactions_of_the_run():
    tables = run_tables()
    ids = tables["transactions"]["transaction_id"]
    assert pc.count_distinct(ids).as_py() == len(ids)
    alerts, labels = tables["alerts"], tables["fraud_labels"]
    assert 0.005 * len(ids) < len(alerts) < 0.02 * len(ids)
    assert pc.all(pc.is_in(alerts["transaction_id"], ids)).as_py()
    assert pc.all(pc.is_in(labels["transaction_id"], alerts["transaction_id"])).as_py()
    joined = alerts.join(tables["transactions"].select(["transaction_id", "card_token", "event_time"]),
                         "transaction_id", right_suffix="_tx")
    assert joined["card_token"].equals(joined["card_token_tx"]) and joined["event_time"].equals(joined["event_time_tx"])
