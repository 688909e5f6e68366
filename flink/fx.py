"""Reference exchange rates, so per-card amount features compare like with like across currencies.

A card used abroad pays in the local currency; comparing minor units of PLN with euro cents would make every
trip to Warsaw look like a spending spike. Rates are approximate reference rates (units per euro) and the
ISO 4217 minor-unit exponent; an unknown currency counts as euro cents (a documented limit: the rules only
need the order of magnitude). Rendered into the feature SQL as a CASE expression.
"""

from __future__ import annotations

# currency -> (units per euro, minor-unit exponent)
EUR_RATES: dict[str, tuple[float, int]] = {
    "EUR": (1.0, 2), "GBP": (0.85, 2), "USD": (1.08, 2), "CAD": (1.47, 2), "CHF": (0.95, 2),
    "PLN": (4.3, 2), "JPY": (160.0, 0), "SGD": (1.45, 2), "AUD": (1.65, 2), "SEK": (11.5, 2),
    "NOK": (11.6, 2), "DKK": (7.46, 2), "CZK": (25.0, 2), "HUF": (390.0, 2), "KRW": (1450.0, 0),
    "CNY": (7.8, 2), "HKD": (8.4, 2), "INR": (90.0, 2), "BRL": (5.6, 2), "MXN": (19.0, 2),
}


def to_eur(amount_minor: int, currency: str) -> float:
    rate, exponent = EUR_RATES.get(currency, (1.0, 2))
    return amount_minor / (10**exponent) / rate


def amount_eur_sql(amount: str, currency: str) -> str:
    """A SQL expression giving the amount in euros (DOUBLE)."""
    cases = " ".join(f"WHEN '{code}' THEN {10**exp * rate!r}" for code, (rate, exp) in sorted(EUR_RATES.items()))
    return f"(CAST({amount} AS DOUBLE) / CASE {currency} {cases} ELSE 100.0 END)"
