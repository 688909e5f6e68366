"""A deterministic, Kafka-free stream of one bank's card transactions with ground truth.

Each call to `next_event()` returns a `SimEvent`: the Avro-ready record plus, outside the record, whether it
is fraud and which pattern made it. Most events are ordinary purchases; some start an *episode* (a fraud
scenario or a legitimate look-alike such as travel) whose later events are scheduled minutes or hours ahead.

Time: with a `clock` (the producer passes `time.time`) event_time is the wall clock, so a stream looks live
and episodes unfold in real minutes. Without one the simulator keeps its own clock from `start_ms`, advancing
by random gaps whose mean follows the daily/weekly rhythm; with a seed the whole stream is then reproducible.
With a wall clock the rate is fixed by the producer, so the rhythm shapes *what* people buy instead
(lunch -> restaurants, evening -> online, night -> little in person, weekend -> shopping).
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import schemas
from services.producer import scenarios
from services.producer.world import Customer, Terminal, World, to_minor

FRAUD_SCENARIOS = tuple(scenarios.FRAUD)
LEGIT_PATTERNS = tuple(scenarios.LEGIT)
CHANNELS = ("POS", "ECOM", "ATM", "MOBILE")
DEFAULT_START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # a Monday morning

# Relative activity per local hour (0-23): quiet nights, a lunch peak and an evening peak.
HOURLY = (0.15, 0.08, 0.05, 0.04, 0.05, 0.12, 0.35, 0.7, 0.9, 0.95, 1.0, 1.25,
          1.6, 1.45, 1.0, 0.95, 1.0, 1.2, 1.5, 1.6, 1.4, 1.0, 0.6, 0.3)
HOURLY_MEAN = sum(HOURLY) / 24


@dataclass(frozen=True)
class SimEvent:
    """A transaction record with its ground truth, which never goes into the record itself."""

    record: dict
    is_fraud: bool
    pattern: str  # "normal", a legit look-alike (travel, ...) or a fraud scenario

    @property
    def scenario(self) -> str | None:
        return self.pattern if self.is_fraud else None

    @property
    def transaction_id(self) -> str:
        return self.record["transaction_id"]


def local_hour(now_ms: int, utc_offset: int) -> tuple[int, bool]:
    """Local hour and whether it is a weekend day."""
    local = datetime.fromtimestamp(now_ms / 1000, tz=UTC) + timedelta(hours=utc_offset)
    return local.hour, local.weekday() >= 5


def activity_weight(now_ms: int, utc_offset: int = 0) -> float:
    """How busy card usage is at this moment relative to the average (1.0); weekends start later."""
    hour, weekend = local_hour(now_ms, utc_offset)
    if weekend:
        hour = (hour - 2) % 24  # the whole day shifts two hours later
        return HOURLY[hour] / HOURLY_MEAN * 0.9
    return HOURLY[hour] / HOURLY_MEAN


class Simulator:
    """Transactions of one bank; see the module docstring for the time model."""

    def __init__(
        self,
        bank: str,
        key: bytes,
        *,
        seed: int | None = None,
        schema_version: int = schemas.LATEST_TRANSACTION_VERSION,
        fraud_rate: float = 0.005,
        legit_pattern_rate: float = 0.005,
        scenarios: tuple[str, ...] = FRAUD_SCENARIOS,
        customers: int = 2000,
        clock: Callable[[], float] | None = None,
        start_ms: int | None = None,
        tps: float = 100.0,
    ):
        if schema_version not in schemas.TRANSACTION_VERSIONS:
            raise ValueError(f"unknown schema version {schema_version}")
        unknown = set(scenarios) - set(FRAUD_SCENARIOS)
        if unknown:
            raise ValueError(f"unknown fraud scenario(s) {sorted(unknown)}; known: {FRAUD_SCENARIOS}")
        self.bank = bank
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "big")
        self.schema_version = schema_version
        self.fraud_rate = fraud_rate
        self.legit_pattern_rate = legit_pattern_rate
        self.scenarios = tuple(scenarios)
        self.rng = random.Random(f"events:{self.seed}:{bank}")
        self.world = World(bank, self.seed, key, customers)
        self._clock = clock
        self._tps = tps
        self._now = start_ms if start_ms is not None else int(DEFAULT_START.timestamp() * 1000)
        self._next_arrival = self._now
        self._pending: list[tuple[int, int, Callable[[int], SimEvent]]] = []
        self._seq = itertools.count()

    # --- the stream ----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SimEvent]:
        while True:
            yield self.next_event()

    def next_event(self) -> SimEvent:
        if self._clock is not None:
            now = int(self._clock() * 1000)
            if self._pending and self._pending[0][0] <= now:
                return heapq.heappop(self._pending)[2](now)
            self._now = now
            return self._regular(now)
        if self._pending and self._pending[0][0] <= self._next_arrival:
            due, _, make = heapq.heappop(self._pending)
            self._now = max(self._now, due)
            return make(self._now)
        self._now = self._next_arrival
        rate = self._tps * activity_weight(self._now, self.world.home_cities[0].utc_offset)
        self._next_arrival = self._now + max(1, round(self.rng.expovariate(rate) * 1000))
        return self._regular(self._now)

    def pending(self) -> int:
        """Episode events scheduled but not yet emitted."""
        return len(self._pending)

    def drain(self) -> Iterator[SimEvent]:
        """Emit every scheduled episode event now, in due order (for finite runs and tests).
        Event times are the scheduled ones, so a drained travel still shows its flight gap."""
        while self._pending:
            due, _, make = heapq.heappop(self._pending)
            self._now = max(self._now, due)
            yield make(self._now)

    # --- helpers for scenarios ----------------------------------------------------------------------------
    def schedule(self, due_ms: int, make: Callable[[int], SimEvent]) -> None:
        heapq.heappush(self._pending, (due_ms, next(self._seq), make))

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def amount(self, customer: Customer, factor: float = 1.0, sigma: float = 0.6) -> float:
        """A purchase in euros around the customer's typical spend."""
        return customer.typical_eur * factor * self.rng.lognormvariate(0, sigma)

    def event(self, now_ms: int, customer: Customer, terminal: Terminal, channel: str, amount_eur: float, *,
              pattern: str = "normal", is_fraud: bool = False, device: str | None = None) -> SimEvent:
        card_present = channel in ("POS", "ATM")
        currency = terminal.city.currency if card_present else customer.home.currency
        record = {
            "transaction_id": self.new_id(),
            "event_time": now_ms,
            "bank_id": self.bank,
            "customer_id": customer.customer_id,
            "card_token": customer.card.token,
            "merchant_id": terminal.merchant_id,
            "terminal_id": terminal.terminal_id,
            "mcc": terminal.mcc,
            "amount_minor": to_minor(amount_eur, currency),
            "currency": currency,
            "channel": channel,
            "country": terminal.country,
            "lat": terminal.lat if card_present else None,
            "lon": terminal.lon if card_present else None,
        }
        if self.schema_version >= 2:
            record["device_id"] = None if card_present else (device or self.rng.choice(customer.devices))
        return SimEvent(record, is_fraud, pattern)

    def online_merchant(self, mccs: tuple[str, ...] | None = None) -> Terminal:
        choices = [t for t in self.world.online if mccs is None or t.mcc in mccs] or self.world.online
        return self.rng.choice(choices)

    # --- ordinary purchases -------------------------------------------------------------------------------
    def _regular(self, now: int) -> SimEvent:
        r = self.rng.random()
        if r < self.fraud_rate and self.scenarios:
            return scenarios.FRAUD[self.rng.choice(self.scenarios)](self, now)
        if r < self.fraud_rate + self.legit_pattern_rate:
            return scenarios.LEGIT[self.rng.choice(LEGIT_PATTERNS)](self, now)
        return self.purchase(self.rng.choice(self.world.customers), now)

    def purchase(self, customer: Customer, now: int, pattern: str = "normal") -> SimEvent:
        """One everyday transaction, shaped by where the customer is and the local time of day."""
        where = customer.location(now)
        pos, ecom, atm, mobile = customer.channel_weights
        if where is None:  # in the air: only online
            pos = atm = 0.0
        else:
            hour, weekend = local_hour(now, where.utc_offset)
            if hour < 7 or hour >= 22:
                pos, atm = pos * 0.2, atm * 0.3
            if 18 <= hour < 23:
                ecom, mobile = ecom * 2, mobile * 2
            if weekend:
                pos *= 1.3
        channel = self.rng.choices(CHANNELS, weights=(pos, ecom, atm, mobile))[0]
        if channel == "ATM":
            terminal = self.rng.choice(self.world.atm[where.code])
            return self.event(now, customer, terminal, channel, self.rng.choice((20, 40, 50, 100, 200)),
                              pattern=pattern)
        if channel == "POS":
            terminal = self._pos_terminal(customer, where, now)
            return self.event(now, customer, terminal, channel, self.amount(customer), pattern=pattern)
        return self.event(now, customer, self.online_merchant(), channel, self.amount(customer, 1.2),
                          pattern=pattern)

    def _pos_terminal(self, customer: Customer, where, now: int) -> Terminal:
        street = self.world.street[where.code]
        hour, weekend = local_hour(now, where.utc_offset)
        if 11 <= hour < 14 and self.rng.random() < 0.35:
            restaurants = self.world.restaurants[where.code]
            if restaurants:
                return self.rng.choice(restaurants)
        if where is customer.home and not (weekend and self.rng.random() < 0.3):
            # mostly the shops near home; weekends wander further afield
            preferred = [t for t in customer.local_terminals if t.mcc in customer.mccs]
            return self.rng.choice(preferred or customer.local_terminals)
        return self.rng.choice(street)

