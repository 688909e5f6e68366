"""A plain-Python reference of flink/sql/features.sql: the same per-card features from a list of records.

The job computes features in Flink SQL; this mirror lets unit tests (and rule tuning) run the simulator's
scenarios through the rule engine without a cluster. Keep the two in step when a feature changes.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque

import pandas as pd

from flink.fx import to_eur
from flink.rules.config import load_defaults
from flink.rules.engine import FEATURES
from services.producer.world import distance_km

HISTORY_ROWS = 50


def reference_features(records: list[dict], tiny_eur: float | None = None) -> pd.DataFrame:
    """Features per record (in event-time order per card), columns = engine FEATURES."""
    if tiny_eur is None:
        tiny_eur = float(load_defaults()["card_testing"].params["tiny_eur"])
    history: dict[str, deque] = defaultdict(lambda: deque(maxlen=HISTORY_ROWS))
    recent: dict[str, deque] = defaultdict(deque)  # last 30 minutes
    last_geo: dict[str, tuple[float, float, int]] = {}
    devices: dict[tuple[str, str | None], int] = defaultdict(int)
    rows = []
    for r in sorted(records, key=lambda r: r["event_time"]):
        card, t = r["card_token"], r["event_time"]
        amount = to_eur(r["amount_minor"], r["currency"])
        hist = history[card]
        logs = [math.log(h["amount"]) for h in hist]
        window = recent[card]
        while window and window[0]["t"] < t - 30 * 60_000:
            window.popleft()
        in10 = [w for w in window if w["t"] >= t - 10 * 60_000]
        device = r.get("device_id")
        devices[(card, device)] += 1
        prev = last_geo.get(card)
        geo = r.get("lat") is not None
        rows.append({
            "transaction_id": r["transaction_id"],
            "amount_eur": amount,
            "device_id": device,
            "hist_n": len(hist),
            "hist_sum_log": sum(logs),
            "hist_sumsq_log": sum(x * x for x in logs),
            "hist_span_s": (t - hist[0]["t"]) / 1000.0 if hist else 0.0,
            "cnt_10m": len(in10) + 1,
            "sum_eur_10m": sum(w["amount"] for w in in10) + amount,
            "tiny_30m": sum(1 for w in window if w["amount"] < tiny_eur),
            "distance_km": distance_km(prev[0], prev[1], r["lat"], r["lon"]) if geo and prev else None,
            "gap_s": (t - prev[2]) / 1000.0 if geo and prev else None,
            "device_uses": devices[(card, device)],
            "device_hist": sum(1 for h in hist if h["device"] is not None),
            "suspect_terminal": None,
            "suspect_cards": None,
        })
        entry = {"t": t, "amount": amount, "device": device}
        hist.append(entry)
        window.append(entry)
        if geo:
            last_geo[card] = (r["lat"], r["lon"], t)
    return pd.DataFrame(rows, columns=list(FEATURES))
