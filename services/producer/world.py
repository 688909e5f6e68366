"""The simulated world: real cities, their merchants and terminals, and one bank's customers.

Terminals and online merchants depend only on the seed, not the bank, so two banks simulated with the same
seed share merchants (as real banks do). Customers depend on the bank and the seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from services.producer.tokenization import Card, generate_pan


@dataclass(frozen=True)
class City:
    name: str
    code: str
    country: str
    currency: str
    lat: float
    lon: float
    utc_offset: int  # hours, standard time; close enough for a daily rhythm


CITIES: tuple[City, ...] = (
    City("London", "LON", "GB", "GBP", 51.5074, -0.1278, 0),
    City("Manchester", "MAN", "GB", "GBP", 53.4808, -2.2426, 0),
    City("Paris", "PAR", "FR", "EUR", 48.8566, 2.3522, 1),
    City("Berlin", "BER", "DE", "EUR", 52.5200, 13.4050, 1),
    City("Madrid", "MAD", "ES", "EUR", 40.4168, -3.7038, 1),
    City("Milan", "MIL", "IT", "EUR", 45.4642, 9.1900, 1),
    City("Amsterdam", "AMS", "NL", "EUR", 52.3676, 4.9041, 1),
    City("Zurich", "ZRH", "CH", "CHF", 47.3769, 8.5417, 1),
    City("Warsaw", "WAW", "PL", "PLN", 52.2297, 21.0122, 1),
    City("New York", "NYC", "US", "USD", 40.7128, -74.0060, -5),
    City("Toronto", "YTO", "CA", "CAD", 43.6532, -79.3832, -5),
    City("Tokyo", "TYO", "JP", "JPY", 35.6762, 139.6503, 9),
    City("Singapore", "SIN", "SG", "SGD", 1.3521, 103.8198, 8),
    City("Sydney", "SYD", "AU", "AUD", -33.8688, 151.2093, 10),
)

# Units of currency per euro and minor-unit exponent: amounts are drawn in euros, then converted.
FX: dict[str, tuple[float, int]] = {
    "EUR": (1.0, 2), "GBP": (0.85, 2), "USD": (1.08, 2), "CAD": (1.47, 2), "CHF": (0.95, 2),
    "PLN": (4.3, 2), "JPY": (160.0, 0), "SGD": (1.45, 2), "AUD": (1.65, 2),
}

# ISO 18245 merchant category codes the simulator uses.
GROCERY, RESTAURANT, FAST_FOOD, FUEL, DEPARTMENT, ELECTRONICS = "5411", "5812", "5814", "5541", "5311", "5732"
MISC_RETAIL, TRANSIT, PHARMACY, HOTEL, AIRLINE, JEWELRY = "5999", "4111", "5912", "7011", "4511", "5944"
ATM_CASH, DIGITAL_GOODS, MONEY_TRANSFER, FURNITURE, CLOTHING = "6011", "5815", "4829", "5712", "5651"
STREET_MCCS = (GROCERY, RESTAURANT, FAST_FOOD, FUEL, DEPARTMENT, ELECTRONICS, MISC_RETAIL, TRANSIT, PHARMACY,
               HOTEL, JEWELRY, FURNITURE, CLOTHING)
EVERYDAY_MCCS = (GROCERY, RESTAURANT, FAST_FOOD, FUEL, TRANSIT, PHARMACY, CLOTHING, MISC_RETAIL)
ONLINE_MCCS = (DIGITAL_GOODS, MISC_RETAIL, ELECTRONICS, CLOTHING, AIRLINE, HOTEL, MONEY_TRANSFER, DEPARTMENT)
ONLINE_COUNTRIES = ("US", "IE", "GB", "NL", "DE", "LU")

TERMINALS_PER_CITY = 160
ATMS_PER_CITY = 20
MALLS_PER_CITY = 4
SHOPS_PER_MALL = 8


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    merchant_id: str
    mcc: str
    city: City
    lat: float | None
    lon: float | None
    country: str
    mall: int | None = None


@dataclass
class Trip:
    """A legitimate journey: in the air between depart and arrive, abroad until leave, home again at back."""

    dest: City
    depart: int
    arrive: int
    leave: int
    back: int


@dataclass
class Customer:
    customer_id: str
    home: City
    card: Card
    typical_eur: float
    mccs: tuple[str, ...]
    channel_weights: tuple[float, float, float, float]  # POS, ECOM, ATM, MOBILE
    devices: list[str]
    local_terminals: list[Terminal] = field(repr=False)  # keeps a logged customer to one line
    trip: Trip | None = field(default=None)

    def location(self, now_ms: int) -> City | None:
        """Where the card can be used in person now; None while flying."""
        trip = self.trip
        if trip is None or now_ms < trip.depart:
            return self.home
        if now_ms >= trip.back:
            self.trip = None
            return self.home
        if trip.arrive <= now_ms < trip.leave:
            return trip.dest
        return None


def distance_km(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lon - a_lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, h)))  # rounding can push h past 1 for antipodes


def city_distance(a: City, b: City) -> float:
    return distance_km(a.lat, a.lon, b.lat, b.lon)


def to_minor(eur: float, currency: str) -> int:
    rate, exponent = FX[currency]
    return max(1, round(eur * rate * 10**exponent))


def _jitter(rng: random.Random, lat: float, lon: float, km: float) -> tuple[float, float]:
    dlat = rng.gauss(0, km / 111.0)
    dlon = rng.gauss(0, km / (111.0 * max(0.2, math.cos(math.radians(lat)))))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def build_city_terminals(seed: int, city: City) -> list[Terminal]:
    """Street shops, shops in a few malls (close together) and ATMs, spread a few km around the centre."""
    rng = random.Random(f"terminals:{seed}:{city.code}")
    out: list[Terminal] = []
    n = 0

    def add(mcc: str, lat: float, lon: float, mall: int | None = None) -> None:
        nonlocal n
        n += 1
        out.append(Terminal(f"T-{city.code}-{n:05d}", f"M-{city.code}-{n:05d}", mcc, city, lat, lon,
                            city.country, mall))

    for _ in range(TERMINALS_PER_CITY):
        add(rng.choice(STREET_MCCS), *_jitter(rng, city.lat, city.lon, 6.0))
    for mall in range(MALLS_PER_CITY):
        mlat, mlon = _jitter(rng, city.lat, city.lon, 5.0)
        for _ in range(SHOPS_PER_MALL):
            add(rng.choice((CLOTHING, DEPARTMENT, ELECTRONICS, FAST_FOOD, MISC_RETAIL, JEWELRY)),
                *_jitter(rng, mlat, mlon, 0.15), mall=mall)
    for _ in range(ATMS_PER_CITY):
        add(ATM_CASH, *_jitter(rng, city.lat, city.lon, 6.0))
    return out


def build_online_merchants(seed: int, count: int = 120) -> list[Terminal]:
    """Card-not-present merchants: a virtual terminal each, no location."""
    rng = random.Random(f"online:{seed}")
    return [
        Terminal(f"T-WEB-{i:05d}", f"M-WEB-{i:05d}", rng.choice(ONLINE_MCCS), CITIES[0], None, None,
                 rng.choice(ONLINE_COUNTRIES))
        for i in range(1, count + 1)
    ]


def bank_iin(bank: str) -> str:
    """A stable 6-digit issuer prefix per bank (Visa-like, starting with 4)."""
    return "4" + str(sum((i + 1) * ord(c) for i, c in enumerate(bank)) % 100000).zfill(5)


class World:
    """Merchants of every city plus the customers of one bank."""

    def __init__(self, bank: str, seed: int, key: bytes, customers: int = 2000):
        self.bank = bank
        rng = random.Random(f"customers:{seed}:{bank}")
        self.terminals = {c.code: build_city_terminals(seed, c) for c in CITIES}
        self.online = build_online_merchants(seed)
        # precomputed because every purchase picks from them
        self.street = {code: [t for t in ts if t.mcc != ATM_CASH] for code, ts in self.terminals.items()}
        self.atm = {code: [t for t in ts if t.mcc == ATM_CASH] for code, ts in self.terminals.items()}
        self.restaurants = {code: [t for t in ts if t.mcc == RESTAURANT] for code, ts in self.terminals.items()}
        # A bank is rooted in a few cities; most customers live in the first.
        self.home_cities = rng.sample(CITIES, 4)
        iin = bank_iin(bank)
        self.customers: list[Customer] = []
        self.by_city: dict[str, list[Customer]] = {}
        for i in range(1, customers + 1):
            home = rng.choices(self.home_cities, weights=(5, 2, 2, 1))[0]
            street = self.street[home.code]
            weights = (rng.uniform(4, 8), rng.uniform(1, 4), rng.uniform(0.3, 1), rng.uniform(0.5, 3))
            customer = Customer(
                customer_id=f"C-{bank}-{i:06d}",
                home=home,
                card=Card(generate_pan(rng, iin), key),
                typical_eur=rng.lognormvariate(math.log(28), 0.5),
                mccs=tuple(rng.sample(EVERYDAY_MCCS, rng.randint(3, 5))),
                channel_weights=weights,
                devices=[f"dev-{rng.getrandbits(48):012x}" for _ in range(rng.randint(1, 2))],
                local_terminals=rng.sample(street, 10),
            )
            self.customers.append(customer)
            self.by_city.setdefault(home.code, []).append(customer)

    def mall(self, city: City, index: int) -> list[Terminal]:
        return [t for t in self.terminals[city.code] if t.mall == index]
