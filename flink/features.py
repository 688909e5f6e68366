"""Per-card and per-terminal features, computed on arrival from event-time state.

The job hash-partitions transactions by card; each subtask keeps the recent history of its cards
(`CardHistory`) in a `CardCache` in its Python worker, filled from the archive the first time a card shows
up after a start (the archive holds every transaction up to the last checkpoint; the rest is replayed from
Kafka, and a transaction seen twice is remembered once). Every transaction gets its features the moment it
arrives, from the history entries earlier in event time. Nothing waits for a watermark and nothing is
dropped as late: a transaction delayed by its bank, a backlog drained after an outage, or a file replayed
with last month's event times is evaluated against its card's history in event-time order like any other.
(Until 2026-11 the features were event-time OVER windows in Flink SQL, which emit a row only once the
watermark passes it and silently drop rows behind the watermark: under a lagging producer a fifth of the
transactions were archived but never evaluated.)

Why not Flink keyed state for the cards: from a Python function in process mode (which the pandas UDFs
require) every state read and write is a round trip to the JVM; measured, that capped the job at ~400
transactions/s. The archive already holds each card's history, consistent with the checkpoints (the JDBC
sink flushes on each), so it is the durable copy and the worker memory a cache of it.

The same classes compute the features of `reference_features`, which unit tests and rule tuning use to run
the simulator's scenarios through the rule engine without a cluster.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
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


ARCHIVE_ROWS_PER_CARD = 200  # loaded per card: HISTORY_ROWS and, unless a card ran wild, its last 30 minutes

CardLoader = Callable[[list[str]], "dict[str, CardHistory]"]


class CardCache:
    """The histories of the cards one subtask owns, least recently used evicted beyond `max_cards`; a card
    not in memory (first seen since the start, or evicted) is loaded with `load` (the archive), a batch of
    them in one call. Keyed partitioning upstream guarantees each card lives in exactly one cache."""

    def __init__(self, load: CardLoader, tiny_eur: float, max_cards: int = 250_000):
        self.load = load
        self.tiny_eur = tiny_eur
        self.max_cards = max_cards
        self.cards: OrderedDict[str, CardHistory] = OrderedDict()
        self.loaded = 0  # cards loaded from the archive so far

    def features(self, rows: Iterable[Mapping]) -> list[dict]:
        """Features of `rows` (dicts with the job's card_input columns), in arrival order."""
        rows = list(rows)
        # not `{...} - self.cards.keys()`: that walks every cached card (~5 ms a bundle at 100,000 cards)
        missing = sorted({r["card_token"] for r in rows if r["card_token"] not in self.cards})
        if missing:
            loaded = self.load(missing)
            self.loaded += len(missing)
            for token in missing:
                self.cards[token] = loaded.get(token) or CardHistory()
        out = []
        for r in rows:
            history = self.cards[r["card_token"]]
            self.cards.move_to_end(r["card_token"])
            out.append(history.features(r["transaction_id"], r["event_ms"], r["amount_eur"], self.tiny_eur,
                                        r["device_id"], r["lat"], r["lon"], r["channel"], r["terminal_id"]))
        while len(self.cards) > self.max_cards:
            self.cards.popitem(last=False)
        return out


def archive_loader(dsn: str, table: str, tiny_eur: float) -> CardLoader:
    """Load card histories from the PostgreSQL archive in one query per batch of cards: each card's last
    ARCHIVE_ROWS_PER_CARD transactions, its last position and last card-present terminal however far back
    (each an index scan of transactions_card_time_idx, newest first, stopping at its LIMIT), and its lifetime
    count per device. One connection, reopened when lost."""
    import psycopg
    from psycopg import sql

    state = {"conn": None}
    millis = sql.SQL("(extract(epoch FROM x.event_time) * 1000)::bigint")
    # kind: 'row' (a recent transaction), 'geo' (last position), 'pos' (last card-present terminal), 'dev'
    query = sql.SQL("""
        SELECT c.card_token, 'row', r.transaction_id, r.t, r.amount_minor, r.currency, r.device_id, r.lat, r.lon,
               r.channel::text, r.terminal_id, NULL::bigint
        FROM unnest(%(cards)s::text[]) AS c(card_token) CROSS JOIN LATERAL (
            SELECT x.transaction_id, {millis} AS t, x.amount_minor, x.currency, x.device_id, x.lat, x.lon,
                   x.channel, x.terminal_id
            FROM {t} x WHERE x.card_token = c.card_token ORDER BY x.event_time DESC LIMIT %(rows)s) r
        UNION ALL
        SELECT c.card_token, 'geo', NULL, g.t, NULL, NULL, NULL, g.lat, g.lon, NULL, NULL, NULL
        FROM unnest(%(cards)s::text[]) AS c(card_token) CROSS JOIN LATERAL (
            SELECT {millis} AS t, x.lat, x.lon FROM {t} x
            WHERE x.card_token = c.card_token AND x.lat IS NOT NULL AND x.lon IS NOT NULL
            ORDER BY x.event_time DESC LIMIT 1) g
        UNION ALL
        SELECT c.card_token, 'pos', NULL, p.t, NULL, NULL, NULL, NULL, NULL, NULL, p.terminal_id, NULL
        FROM unnest(%(cards)s::text[]) AS c(card_token) CROSS JOIN LATERAL (
            SELECT {millis} AS t, x.terminal_id FROM {t} x WHERE x.card_token = c.card_token AND x.channel = 'POS'
            ORDER BY x.event_time DESC LIMIT 1) p
        UNION ALL
        SELECT x.card_token, 'dev', NULL, NULL, NULL, NULL, x.device_id, NULL, NULL, NULL, NULL, count(*)
        FROM {t} x WHERE x.card_token = ANY(%(cards)s) GROUP BY x.card_token, x.device_id
        """).format(t=sql.Identifier(table), millis=millis)

    def load(tokens: list[str]) -> dict[str, CardHistory]:
        if state["conn"] is None or state["conn"].closed:
            state["conn"] = psycopg.connect(dsn, autocommit=True, application_name="rtfd-flink-card-history")
        conn = state["conn"]
        try:
            found = conn.execute(query, {"cards": tokens, "rows": ARCHIVE_ROWS_PER_CARD}).fetchall()
        except psycopg.OperationalError:
            conn.close()
            raise
        out: dict[str, CardHistory] = defaultdict(CardHistory)
        rows = sorted((r for r in found if r[1] == "row"), key=lambda r: (r[3], r[2]))  # oldest first
        for token, _kind, tx, t, amount, currency, device, lat, lon, channel, terminal, _n in rows:
            out[token].remember(tx, t, to_eur(amount, currency), tiny_eur, device, lat, lon, channel, terminal)
        for token, kind, _tx, t, _a, _c, device, lat, lon, _ch, terminal, n in found:
            history = out[token]
            older = not history.entries or t is not None and t < history.entries[0][T]  # else among the rows
            if kind == "dev":
                history.devices[device] = n
            elif kind == "geo" and older:
                history.last_geo = (t, lat, lon)
            elif kind == "pos" and older:
                history.last_pos = (t, terminal)
        return dict(out)

    return load


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
