"""Per-card and per-terminal features, computed on arrival from event-time state: the Python reference.

The job computes them in the JVM, in Flink keyed state (jvm/functions CardFeatures, CardAnomalies and
TerminalContext), transaction by transaction as these classes do: tests/flink/test_card_features.py and
test_terminal_context.py hold the two to the same features. These classes run `reference_features`, which unit
tests and rule tuning use to put the simulator's scenarios through the rule engine without a cluster.

Every transaction gets its features the moment it arrives, from its card's history earlier in event time.
Nothing waits for a watermark and nothing is dropped as late: a transaction delayed by its bank, a backlog
drained after an outage, or a file replayed with last month's event times is evaluated against its card's
history in event-time order like any other. (Until 2026-11 the features were event-time OVER windows in Flink
SQL, which emit a row only once the watermark passes it and silently drop rows behind the watermark: under a
lagging producer a fifth of the transactions were archived but never evaluated.) A transaction seen twice (a
replay after a failure) is remembered once.
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
from services.producer.world import distance_km

HISTORY_ROWS = 50  # the amount profile: the card's last 50 transactions before this one
TINY_WINDOW_MS = 30 * 60_000  # card testing: tiny charges in the 30 minutes before
VELOCITY_WINDOW_MS = 10 * 60_000  # velocity: count and spend in the 10 minutes up to this one

# the columns CardHistory.features adds to a transaction (flink.job declares their Flink types)
CARD_FEATURES = ("hist_n", "hist_sum_log", "hist_sumsq_log", "hist_span_s", "cnt_10m", "sum_eur_10m", "tiny_30m",
                 "distance_km", "gap_s", "device_uses", "device_hist", "prev_pos_terminal", "prev_pos_ms")


# One past transaction of the card, as much as the features need, as a plain tuple indexed by these names:
#   T event time (ms); TX transaction id (a transaction replayed after a failure is not remembered twice);
#   AMOUNT_EUR; TINY (below tiny_eur); DEVICE (it carried a device id); GEO (lat, lon) or None;
#   POS_TERMINAL the card-present terminal or None; LOG_AMOUNT log(amount_eur) for the amount profile, None
#   unless amount_eur > 0.
# A card's entries are a tuple of these tuples, so the cyclic garbage collector tracks one object per card
# (its CardHistory) instead of every entry: it stops tracking a plain tuple of plain values (not a dataclass
# instance, nor a NamedTuple, nor a list or set). With entries as dataclass instances in a list, a worker's
# ~10^6 of them made each full collection pause it for 0.3-0.9 s: the tail of the alert latency
# (docs/benchmarks.md, session 9).
T, TX, AMOUNT_EUR, TINY, DEVICE, GEO, POS_TERMINAL, LOG_AMOUNT = range(8)
Entry = tuple


def _time(entry: Entry) -> int:
    return entry[T]


@dataclass(slots=True)
class CardHistory:
    """A card's recent transactions in event-time order: the last HISTORY_ROWS of them, and at least every
    one of the last TINY_WINDOW_MS behind the newest. Older geo-located and card-present entries survive as
    `last_geo` / `last_pos` (the last ones evicted), so travel and terminal features reach back indefinitely;
    per-device use counts are kept for the card's lifetime (its state lives as long as the card is used)."""

    entries: tuple[Entry, ...] = ()  # replaced, never changed in place (see Entry)
    devices: dict[str | None, int] = field(default_factory=dict)
    last_geo: tuple[int, float, float] | None = None  # (t, lat, lon) of the newest evicted geo entry
    last_pos: tuple[int, str] | None = None  # (t, terminal) of the newest evicted card-present entry

    def features(self, tx: str, t: int, amount_eur: float, tiny_eur: float, device_id: str | None,
                 lat: float | None, lon: float | None, channel: str | None, terminal_id: str | None) -> dict:
        """The features of transaction `tx` at event time `t` from the entries before it, then remember it
        (unless it is remembered already: a replay after a failure, or a row the archive held at load)."""
        at = bisect.bisect_right(self.entries, t, key=_time)  # after its peers: like SQL's ROWS frames
        # remembered already: a transaction replayed (or loaded from the archive) has its event time
        known = any(e[TX] == tx for e in self.entries[bisect.bisect_left(self.entries, t, key=_time):at])
        before = [e for e in self.entries[:at] if e[TX] != tx] if known else self.entries[:at]
        hist = before[-HISTORY_ROWS:]
        logs = [e[LOG_AMOUNT] for e in hist if e[LOG_AMOUNT] is not None]
        in10 = [e[AMOUNT_EUR] for e in before if e[T] >= t - VELOCITY_WINDOW_MS]
        if not known:
            self.devices[device_id] = self.devices.get(device_id, 0) + 1
        geo = next(((e[T], *e[GEO]) for e in reversed(before) if e[GEO] is not None), None) or self._older(
            self.last_geo, t)
        pos = next(((e[T], e[POS_TERMINAL]) for e in reversed(before) if e[POS_TERMINAL] is not None), None) or (
            self._older(self.last_pos, t))
        here = lat is not None and lon is not None
        out = {
            "hist_n": len(hist),
            "hist_sum_log": sum(logs),
            "hist_sumsq_log": sum(x * x for x in logs),
            "hist_span_s": (t - hist[0][T]) / 1000.0 if hist else 0.0,
            "cnt_10m": len(in10) + 1,
            "sum_eur_10m": sum(in10) + amount_eur,
            "tiny_30m": sum(1 for e in before if e[TINY] and e[T] >= t - TINY_WINDOW_MS),
            "distance_km": distance_km(geo[1], geo[2], lat, lon) if here and geo else None,
            "gap_s": (t - geo[0]) / 1000.0 if here and geo else None,
            "device_uses": self.devices.get(device_id, 1),
            "device_hist": sum(1 for e in hist if e[DEVICE]),
            "prev_pos_terminal": pos[1] if pos else None,
            "prev_pos_ms": pos[0] if pos else None,
        }
        if not known:
            self.remember(tx, t, amount_eur, tiny_eur, device_id, lat, lon, channel, terminal_id, at=at)
        return out

    def remember(self, tx: str, t: int, amount_eur: float, tiny_eur: float, device_id: str | None,
                 lat: float | None, lon: float | None, channel: str | None, terminal_id: str | None,
                 at: int | None = None) -> None:
        """Add a transaction to the history (no features: loading from the archive)."""
        if at is None:
            at = bisect.bisect_right(self.entries, t, key=_time)
        here = lat is not None and lon is not None
        entry = (t, tx, amount_eur, amount_eur < tiny_eur, device_id is not None, (lat, lon) if here else None,
                 terminal_id if channel == "POS" and terminal_id is not None else None,
                 math.log(amount_eur) if amount_eur > 0 else None)
        self.entries = (*self.entries[:at], entry, *self.entries[at:])
        self._evict()

    @staticmethod
    def _older(kept: tuple | None, t: int) -> tuple | None:
        return kept if kept is not None and kept[0] <= t else None

    def _evict(self) -> None:
        horizon = self.entries[-1][T] - TINY_WINDOW_MS
        drop = 0
        while len(self.entries) - drop > HISTORY_ROWS and self.entries[drop][T] < horizon:
            drop += 1
        for e in self.entries[:drop]:  # oldest first: the last one seen is the newest evicted
            if e[GEO] is not None:
                self.last_geo = (e[T], *e[GEO])
            if e[POS_TERMINAL] is not None:
                self.last_pos = (e[T], e[POS_TERMINAL])
        if drop:
            self.entries = self.entries[drop:]


@dataclass
class TerminalHistory:
    """Anomalous cards seen at one terminal: the card and the event time of its latest anomaly there. The job
    runs the same logic in the JVM (jvm/functions TerminalContext; tests/flink/test_terminal_context.py holds
    the two to the same counts); this one serves reference_features users: unit tests and rule tuning."""

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
        f = cards[r["card_token"]].features(r["transaction_id"], r["event_time"], amount, tiny_eur,
                                            r.get("device_id"), r.get("lat"), r.get("lon"), r.get("channel"),
                                            r.get("terminal_id"))
        rows.append({"transaction_id": r["transaction_id"], "amount_eur": amount, "device_id": r.get("device_id"),
                     **f, "suspect_terminal": None, "suspect_cards": None})
    return pd.DataFrame(rows, columns=[*FEATURES, "prev_pos_terminal", "prev_pos_ms"])
