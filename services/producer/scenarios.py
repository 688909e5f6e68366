"""Episodes the simulator starts now and then: injected fraud scenarios and their legitimate look-alikes.

Each episode function takes the simulator and the current time, returns the first event and schedules the
rest with `sim.schedule(due_ms, make_event)`. The look-alikes exist so a detector cannot score well by
flagging every large amount, every foreign city or every quick succession of purchases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from services.producer.world import (
    AIRLINE,
    CITIES,
    DEPARTMENT,
    DIGITAL_GOODS,
    ELECTRONICS,
    FURNITURE,
    HOTEL,
    JEWELRY,
    MALLS_PER_CITY,
    MISC_RETAIL,
    MONEY_TRANSFER,
    RESTAURANT,
    City,
    Customer,
    Terminal,
    Trip,
    city_distance,
)

if TYPE_CHECKING:
    from services.producer.simulator import SimEvent, Simulator

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def far_cities(home: City, min_km: float = 1000.0) -> list[City]:
    """Cities at least min_km away (the farthest one if none is that far)."""
    far = [c for c in CITIES if city_distance(c, home) >= min_km]
    return far or [max(CITIES, key=lambda c: city_distance(c, home))]


def flight_ms(distance_km: float) -> int:
    """Door-to-door time of a flight: ~800 km/h plus time at both airports."""
    return int((distance_km / 800.0 + 2.5) * HOUR)


def _street(sim: Simulator, city: City, mccs: tuple[str, ...] | None = None) -> Terminal:
    street = sim.world.street[city.code]
    shops = street if mccs is None else [t for t in street if t.mcc in mccs]
    return sim.rng.choice(shops or street)


def _new_device(sim: Simulator) -> str:
    return f"dev-{sim.rng.getrandbits(48):012x}"


def _victim(sim: Simulator) -> Customer:
    return sim.rng.choice(sim.world.customers)


def _series(sim: Simulator, start: int, count: int, gap_s: tuple[int, int], make: Callable[[int], SimEvent]):
    """Schedule count-1 more events after `start`, gap_s seconds apart; return the last due time."""
    t = start
    for _ in range(count - 1):
        t += sim.rng.randint(*gap_s) * 1000
        sim.schedule(t, make)
    return t


# --- fraud --------------------------------------------------------------------------------------------------
def card_testing(sim: Simulator, now: int) -> SimEvent:
    """Stolen card details probed with tiny online charges minutes apart, then one large purchase."""
    rng, victim, device = sim.rng, _victim(sim), _new_device(sim)
    tester = sim.online_merchant((DIGITAL_GOODS, MISC_RETAIL, MONEY_TRANSFER))

    def tiny(at: int) -> SimEvent:
        return sim.event(at, victim, tester, "ECOM", rng.uniform(0.3, 2.0), pattern="card_testing",
                         is_fraud=True, device=device)

    last = _series(sim, now, rng.randint(3, 6), (60, 240), tiny)
    shop = sim.online_merchant((ELECTRONICS, JEWELRY))
    sim.schedule(last + rng.randint(60, 300) * 1000,
                 lambda at: sim.event(at, victim, shop, "ECOM", rng.uniform(300, 2500),
                                      pattern="card_testing", is_fraud=True, device=device))
    return tiny(now)


def impossible_travel(sim: Simulator, now: int) -> SimEvent:
    """A genuine purchase at home, then the cloned card in a city a thousand km away minutes later."""
    rng, victim = sim.rng, _victim(sim)
    where = victim.location(now) or victim.home
    here = rng.choice(victim.local_terminals) if where is victim.home else _street(sim, where)
    there = _street(sim, rng.choice(far_cities(where)))
    sim.schedule(now + rng.randint(3, 30) * MINUTE,
                 lambda at: sim.event(at, victim, there, "POS", sim.amount(victim, rng.uniform(2, 6)),
                                      pattern="impossible_travel", is_fraud=True))
    return sim.event(now, victim, here, "POS", sim.amount(victim))


def account_takeover(sim: Simulator, now: int) -> SimEvent:
    """Someone logs in from a new device and spends far more than the customer ever does."""
    rng, victim, device = sim.rng, _victim(sim), _new_device(sim)

    def spend(at: int) -> SimEvent:
        shop = sim.online_merchant((ELECTRONICS, JEWELRY, MONEY_TRANSFER, DIGITAL_GOODS))
        return sim.event(at, victim, shop, rng.choice(("ECOM", "MOBILE")),
                         sim.amount(victim, rng.uniform(6, 15), 0.3), pattern="account_takeover",
                         is_fraud=True, device=device)

    _series(sim, now, rng.randint(2, 4), (120, 600), spend)
    return spend(now)


def compromised_terminal(sim: Simulator, now: int) -> SimEvent:
    """A skimmer: many distinct cards pay (genuinely) at one terminal; later they are used elsewhere."""
    rng = sim.rng
    crowded = [c for c in sim.world.home_cities if len(sim.world.by_city.get(c.code, ())) >= 3]
    city = rng.choice(crowded or sim.world.home_cities)
    terminal = _street(sim, city)
    locals_ = sim.world.by_city.get(city.code) or sim.world.customers
    visitors = rng.sample(locals_, min(rng.randint(6, 12), len(locals_)))
    t, first = now, None
    for i, card in enumerate(visitors):
        if i:
            t += rng.randint(20, 120) * 1000

        def visit(at: int, card: Customer = card) -> SimEvent:
            return sim.event(at, card, terminal, "POS", sim.amount(card), pattern="terminal_visit")

        if i == 0:
            first = visit(now)
        else:
            sim.schedule(t, visit)
        if i == 0 or rng.random() < 0.7:  # most, not all, stolen cards get used
            elsewhere = _street(sim, rng.choice(far_cities(city, 300)))

            def cashout(at: int, card: Customer = card, shop: Terminal = elsewhere) -> SimEvent:
                if rng.random() < 0.5:
                    return sim.event(at, card, shop, "POS", sim.amount(card, rng.uniform(3, 8)),
                                     pattern="compromised_terminal", is_fraud=True)
                web = sim.online_merchant((ELECTRONICS, JEWELRY, MONEY_TRANSFER))
                return sim.event(at, card, web, "ECOM", sim.amount(card, rng.uniform(3, 8)),
                                 pattern="compromised_terminal", is_fraud=True, device=_new_device(sim))

            sim.schedule(t + rng.randint(10, 40) * MINUTE, cashout)
    return first


def velocity_burst(sim: Simulator, now: int) -> SimEvent:
    """A cloned card emptied fast: many purchases seconds apart."""
    rng, victim = sim.rng, _victim(sim)
    city = victim.location(now) or victim.home
    device = _new_device(sim)

    def burst(at: int) -> SimEvent:
        if rng.random() < 0.6:
            return sim.event(at, victim, _street(sim, city), "POS", sim.amount(victim, rng.uniform(1, 3)),
                             pattern="velocity_burst", is_fraud=True)
        return sim.event(at, victim, sim.online_merchant(), "ECOM", sim.amount(victim, rng.uniform(1, 3)),
                         pattern="velocity_burst", is_fraud=True, device=device)

    _series(sim, now, rng.randint(8, 15), (5, 40), burst)
    return burst(now)


# --- legitimate look-alikes ---------------------------------------------------------------------------------
def travel(sim: Simulator, now: int) -> SimEvent:
    """A customer flies abroad: the next in-person purchases are in another city, after a plausible gap."""
    rng = sim.rng
    customer = next((c for c in (rng.choice(sim.world.customers) for _ in range(20)) if c.trip is None),
                    rng.choice(sim.world.customers))
    home = customer.location(now) or customer.home
    dest = rng.choice([c for c in CITIES if c != home])
    flight = flight_ms(city_distance(home, dest))
    depart = now + rng.randint(30, 90) * MINUTE
    arrive = depart + flight
    leave = arrive + rng.randint(2, 7) * DAY
    customer.trip = Trip(dest, depart, arrive, leave, leave + flight)
    ticket = sim.online_merchant((AIRLINE, HOTEL))
    first = sim.event(now, customer, ticket, "ECOM", sim.amount(customer, 4, 0.3), pattern="travel")
    t = arrive
    for _ in range(rng.randint(2, 3)):
        t += rng.randint(10, 180) * MINUTE
        shop = _street(sim, dest, (HOTEL, RESTAURANT, DEPARTMENT, MISC_RETAIL))
        sim.schedule(t, lambda at, shop=shop: sim.event(at, customer, shop, "POS", sim.amount(customer),
                                                        pattern="travel"))
    return first


def large_purchase(sim: Simulator, now: int) -> SimEvent:
    """A genuine big-ticket purchase (a sofa, a laptop, a ring) with the customer's own card and device."""
    rng, customer = sim.rng, _victim(sim)
    amount = sim.amount(customer, rng.uniform(10, 30), 0.3)
    where = customer.location(now)
    if where is None:
        return sim.event(now, customer, sim.online_merchant((ELECTRONICS, DEPARTMENT)), "ECOM", amount,
                         pattern="large_purchase")
    shop = _street(sim, where, (ELECTRONICS, FURNITURE, JEWELRY, DEPARTMENT))
    return sim.event(now, customer, shop, "POS", amount, pattern="large_purchase")


def mall_burst(sim: Simulator, now: int) -> SimEvent:
    """Three purchases in neighbouring shops of one mall within half an hour."""
    rng = sim.rng
    customer = _victim(sim)
    where = customer.location(now) or customer.home
    shops = rng.sample(sim.world.mall(where, rng.randrange(MALLS_PER_CITY)), 3)
    t = now
    for shop in shops[1:]:
        t += rng.randint(3, 12) * MINUTE
        sim.schedule(t, lambda at, shop=shop: sim.event(at, customer, shop, "POS", sim.amount(customer),
                                                        pattern="mall_burst"))
    return sim.event(now, customer, shops[0], "POS", sim.amount(customer), pattern="mall_burst")


FRAUD: dict[str, Callable[[Simulator, int], SimEvent]] = {
    "card_testing": card_testing,
    "impossible_travel": impossible_travel,
    "account_takeover": account_takeover,
    "compromised_terminal": compromised_terminal,
    "velocity_burst": velocity_burst,
}
LEGIT: dict[str, Callable[[Simulator, int], SimEvent]] = {
    "travel": travel,
    "large_purchase": large_purchase,
    "mall_burst": mall_burst,
}
