"""Per-card and per-terminal features, computed on arrival from event-time state.

The job keys transactions by card and keeps each card's recent history in Flink state (`CardHistory`, one
pickled value per card); every transaction gets its features the moment it arrives, from the history
entries that are earlier in event time. Nothing waits for a watermark and nothing is dropped as late: a
transaction delayed by its bank, a backlog drained after an outage, or a file replayed with last month's
event times is evaluated against its card's history in event-time order like any other.
(Until 2026-11 the features were event-time OVER windows in Flink SQL, which emit a row only once the
watermark passes it and silently drop rows behind the watermark: under a lagging producer a fifth of the
transactions were archived but never evaluated.)

The same classes compute the features of `reference_features`, which unit tests and rule tuning use to run
the simulator's scenarios through the rule engine without a cluster.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from flink.fx import to_eur
from flink.rules.config import load_defaults
from flink.rules.engine import FEATURES

HISTORY_ROWS = 50  # the amount profile: the card's last 50 transactions before this one
TINY_WINDOW_MS = 30 * 60_000  # card testing: tiny charges in the 30 minutes before
VELOCITY_WINDOW_MS = 10 * 60_000  # velocity: count and spend in the 10 minutes up to this one
EARTH_RADIUS_KM = 6371.0

# the columns CardHistory.features adds to a transaction (flink.job declares their Flink types)
CARD_FEATURES = ("hist_n", "hist_sum_log", "hist_sumsq_log", "hist_span_s", "cnt_10m", "sum_eur_10m", "tiny_30m",
                 "distance_km", "gap_s", "device_uses", "device_hist", "prev_pos_terminal", "prev_pos_ms")


def haversine_km(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b_lon - a_lon) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


@dataclass
class Entry:
    """One past transaction of the card, as much as the features need."""

    t: int  # event time, ms
    amount_eur: float
    tiny: bool
    device: bool  # it carried a device id
    geo: tuple[float, float] | None  # (lat, lon)
    pos_terminal: str | None  # card-present terminal


@dataclass
class CardHistory:
    """A card's recent transactions in event-time order: the last HISTORY_ROWS of them, and at least every
    one of the last TINY_WINDOW_MS behind the newest. Older geo-located and card-present entries survive as
    `last_geo` / `last_pos` (the last ones evicted), so travel and terminal features reach back indefinitely;
    per-device use counts are kept for the card's lifetime (its state lives as long as the card is used)."""

    entries: list[Entry] = field(default_factory=list)
    devices: dict[str | None, int] = field(default_factory=dict)
    last_geo: tuple[int, float, float] | None = None  # (t, lat, lon) of the newest evicted geo entry
    last_pos: tuple[int, str] | None = None  # (t, terminal) of the newest evicted card-present entry

    def features(self, t: int, amount_eur: float, tiny_eur: float, device_id: str | None, lat: float | None,
                 lon: float | None, channel: str | None, terminal_id: str | None) -> dict:
        """The features of a transaction at event time `t` from the entries before it, then remember it."""
        at = bisect.bisect_right([e.t for e in self.entries], t)  # after its peers: like SQL's ROWS frames
        before = self.entries[:at]
        hist = before[-HISTORY_ROWS:]
        logs = [math.log(e.amount_eur) for e in hist if e.amount_eur > 0]
        in10 = [e.amount_eur for e in before if e.t >= t - VELOCITY_WINDOW_MS]
        self.devices[device_id] = self.devices.get(device_id, 0) + 1
        geo = next(((e.t, *e.geo) for e in reversed(before) if e.geo is not None), None) or self._older(
            self.last_geo, t)
        pos = next(((e.t, e.pos_terminal) for e in reversed(before) if e.pos_terminal is not None), None) or (
            self._older(self.last_pos, t))
        here = lat is not None and lon is not None
        out = {
            "hist_n": len(hist),
            "hist_sum_log": sum(logs),
            "hist_sumsq_log": sum(x * x for x in logs),
            "hist_span_s": (t - hist[0].t) / 1000.0 if hist else 0.0,
            "cnt_10m": len(in10) + 1,
            "sum_eur_10m": sum(in10) + amount_eur,
            "tiny_30m": sum(1 for e in before if e.tiny and e.t >= t - TINY_WINDOW_MS),
            "distance_km": haversine_km(geo[1], geo[2], lat, lon) if here and geo else None,
            "gap_s": (t - geo[0]) / 1000.0 if here and geo else None,
            "device_uses": self.devices[device_id],
            "device_hist": sum(1 for e in hist if e.device),
            "prev_pos_terminal": pos[1] if pos else None,
            "prev_pos_ms": pos[0] if pos else None,
        }
        self.entries.insert(at, Entry(t, amount_eur, amount_eur < tiny_eur, device_id is not None,
                                      (lat, lon) if here else None,
                                      terminal_id if channel == "POS" and terminal_id is not None else None))
        self._evict()
        return out

    @staticmethod
    def _older(kept: tuple | None, t: int) -> tuple | None:
        return kept if kept is not None and kept[0] <= t else None

    def _evict(self) -> None:
        horizon = self.entries[-1].t - TINY_WINDOW_MS
        drop = 0
        while len(self.entries) - drop > HISTORY_ROWS and self.entries[drop].t < horizon:
            drop += 1
        for e in self.entries[:drop]:  # oldest first: the last one seen is the newest evicted
            if e.geo is not None:
                self.last_geo = (e.t, *e.geo)
            if e.pos_terminal is not None:
                self.last_pos = (e.t, e.pos_terminal)
        del self.entries[:drop]


@dataclass
class TerminalHistory:
    """Anomalous cards seen at one terminal: the card and the event time of its latest anomaly there."""

    cards: dict[str, int] = field(default_factory=dict)

    def suspect_cards(self, card_token: str, t: int, span_ms: int, counts: bool = True) -> int:
        """Distinct anomalous cards at this terminal within `span_ms` up to `t`, this one included. An anomaly
        that `counts` is remembered; one that does not (a LOW-only anomaly: a large purchase by itself is no
        sign of a skimmer) is evaluated against the others but adds nothing to the terminal's count."""
        if counts:
            self.cards[card_token] = max(t, self.cards.get(card_token, t))
            newest = max(self.cards.values())
            self.cards = {c: at for c, at in self.cards.items() if at >= newest - span_ms}
        others = sum(1 for c, at in self.cards.items() if t - span_ms <= at <= t and c != card_token)
        return others + 1


def reference_features(records: Iterable[Mapping], tiny_eur: float | None = None) -> pd.DataFrame:
    """Features per record (processed in the given order, as the job processes arrivals), columns = engine
    FEATURES plus the card-present context (prev_pos_terminal, prev_pos_ms)."""
    if tiny_eur is None:
        tiny_eur = float(load_defaults()["card_testing"].params["tiny_eur"])
    cards: dict[str, CardHistory] = defaultdict(CardHistory)
    rows = []
    for r in records:
        amount = to_eur(r["amount_minor"], r["currency"])
        f = cards[r["card_token"]].features(r["event_time"], amount, tiny_eur, r.get("device_id"), r.get("lat"),
                                            r.get("lon"), r.get("channel"), r.get("terminal_id"))
        rows.append({"transaction_id": r["transaction_id"], "amount_eur": amount, "device_id": r.get("device_id"),
                     **f, "suspect_terminal": None, "suspect_cards": None})
    return pd.DataFrame(rows, columns=[*FEATURES, "prev_pos_terminal", "prev_pos_ms"])
