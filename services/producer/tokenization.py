"""Card numbers and card tokens.

A PAN exists only inside the bank's producer process: it is generated here, turned into
card_token = hex HMAC-SHA256(PAN, key) at once, and the token is what every record, key and label carries.
`Card` keeps the PAN out of its repr so a stray log line or traceback cannot leak it.
"""

from __future__ import annotations

import hashlib
import hmac
import random

from services.transactions import luhn_sum


def luhn_check_digit(partial: str) -> str:
    """The digit that makes partial + digit Luhn-valid. A trailing 0 adds nothing to the Luhn sum and puts
    every digit of `partial` where the check digit leaves it; one pass, where trying all ten digits took ten
    (big bench worlds build hundreds of thousands of cards)."""
    return str(-luhn_sum(partial + "0") % 10)


def generate_pan(rng: random.Random, iin: str, length: int = 16) -> str:
    """A Luhn-valid card number starting with the issuer prefix `iin`."""
    body = iin + "".join(str(rng.randrange(10)) for _ in range(length - len(iin) - 1))
    return body + luhn_check_digit(body)


def card_token(pan: str, key: bytes) -> str:
    """64-hex HMAC-SHA256 of the PAN: stable for one key, useless without it."""
    return hmac.new(key, pan.encode("ascii"), hashlib.sha256).hexdigest()


class Card:
    """A card of the simulated bank; only `token` ever leaves the process."""

    __slots__ = ("_pan", "token")

    def __init__(self, pan: str, key: bytes):
        self._pan = pan
        self.token = card_token(pan, key)

    @property
    def pan(self) -> str:
        """The card number, for checks inside the producer (tests prove it never reaches a record)."""
        return self._pan

    def __repr__(self) -> str:
        return f"Card(token={self.token[:12]}...)"
