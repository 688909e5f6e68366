"""Scan log files for card numbers and secrets: no component may ever write either (issue #6, least privilege).

A *card number* here is a Luhn-valid run of 13-19 digits that is not part of a longer digit run, written
either as one run or in the printed 4-4-4-4 / 4-6-5 groups with one consistent space or dash. Two kinds of
digit runs in logs look like that by chance and are not reported:

- timestamps: a 13-, 16- or 19-digit run that, read as epoch milli-, micro- or nanoseconds, falls within
  ten years of now. Such timestamps (2016..2036) start with 14..20; card numbers of those lengths start
  with 2221..2720 (Mastercard), 3..6, or 1 only for airline cards (UATP, 15 digits), so this skips no card
  number a bank would send. It is revisited when "now" moves past 2030 (the window then reaches 22..);
- pieces of hexadecimal ids (Flink job/vertex ids, HMAC card tokens): a digit run inside a longer token of
  only hex characters, e.g. `a07c1234567890123456bf`. A digit run glued to other letters is still reported.

A *secret* is any given value (generated passwords, the HMAC key, ...) of at least MIN_SECRET_LENGTH
characters, found literally or URL-encoded. Findings never carry the value itself: a card number is shown
masked (first 6, last 4), a secret by its name only, so the scanner's own report cannot leak them.

Run it on a state folder: `python -m rtfd.security.logscan [STATE_DIR]` (exit status 1 on findings).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from services.transactions import luhn_valid

MIN_SECRET_LENGTH = 8
"""Shorter values (e.g. the dev default PostgreSQL password `rtfd`) are ordinary words in any log."""
TIMESTAMP_WINDOW_S = 10 * 365 * 24 * 3600

# one digit run, or printed groups (4-4-4-4[-3] or Amex 4-6-5) with one consistent separator
_CANDIDATE = re.compile(
    r"(?<!\d)(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{4}([ -])\d{6}\2\d{5})(?!\d)"
)
_HEX = frozenset("0123456789abcdefABCDEF")
_TOKEN_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    kind: str  # "card number" | "secret"
    what: str  # the masked card number or the secret's name: never the value

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} {self.what}"


def mask(digits: str) -> str:
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


def is_recent_timestamp(digits: str, now_s: float | None = None) -> bool:
    """A 13/16/19-digit run that reads as epoch ms/us/ns within TIMESTAMP_WINDOW_S of now."""
    scale = {13: 1e3, 16: 1e6, 19: 1e9}.get(len(digits))
    if scale is None:
        return False
    now_s = time.time() if now_s is None else now_s
    return abs(int(digits) / scale - now_s) <= TIMESTAMP_WINDOW_S


def _inside_hex_token(line: str, start: int, end: int) -> bool:
    """The run is part of a longer word made only of hex characters (an id or token, not a number)."""
    left, right = start, end
    while left > 0 and line[left - 1] in _TOKEN_CHARS:
        left -= 1
    while right < len(line) and line[right] in _TOKEN_CHARS:
        right += 1
    if (left, right) == (start, end):
        return False
    return all(ch in _HEX for ch in line[left:right])


def card_numbers(line: str, now_s: float | None = None) -> Iterator[str]:
    """The card numbers in one line of text (digits only), by the rules in the module docstring."""
    for match in _CANDIDATE.finditer(line):
        digits = re.sub(r"[ -]", "", match.group())
        if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
            continue
        if is_recent_timestamp(digits, now_s):
            continue
        if match.group().isdigit() and _inside_hex_token(line, match.start(), match.end()):
            continue
        yield digits


def _needles(secrets: Mapping[str, str]) -> list[tuple[str, str]]:
    needles = []
    for name, value in secrets.items():
        if len(value) < MIN_SECRET_LENGTH:
            continue
        for form in {value, quote(value, safe="")}:
            needles.append((name, form))
    return needles


def scan_text(path: Path, lines: Iterable[str], secrets: Mapping[str, str] | None = None,
              now_s: float | None = None) -> list[Finding]:
    needles = _needles(secrets or {})
    found = []
    for number, line in enumerate(lines, start=1):
        for digits in card_numbers(line, now_s):
            found.append(Finding(path, number, "card number", mask(digits)))
        for name, value in needles:
            if value in line:
                found.append(Finding(path, number, "secret", name))
    return found


def scan_files(paths: Iterable[Path], secrets: Mapping[str, str] | None = None,
               now_s: float | None = None) -> list[Finding]:
    """Every finding in the given files and, recursively, in the files under the given folders."""
    found = []
    for path in _files(paths):
        # logs may hold binary noise (a crashed JVM's dump): read everything, undecodable bytes as U+FFFD
        with open(path, encoding="utf-8", errors="replace") as f:
            found += scan_text(path, f, secrets, now_s)
    return found


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path


def stack_log_dirs(state_dir: Path) -> list[Path]:
    """Where a native stack's components write logs: <state>/logs and Flink's log folder."""
    return [state_dir / "logs", state_dir / "flink" / "log"]


def stack_secrets(state_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every generated secret of a state folder (<state>/secrets/*), by file name, plus `extra`."""
    found = {p.name: p.read_text().strip() for p in sorted((state_dir / "secrets").glob("*")) if p.is_file()}
    found.update(extra or {})
    return found


def main(argv: list[str] | None = None) -> int:
    from rtfd.config import Settings

    args = sys.argv[1:] if argv is None else argv
    settings = Settings(state_dir=Path(args[0])) if args else Settings()
    state = settings.state_dir.resolve()
    extra = {}
    if settings.card_token_key is not None:
        extra["RTFD_CARD_TOKEN_KEY"] = settings.card_token_key.get_secret_value()
    findings = scan_files(stack_log_dirs(state), stack_secrets(state, extra))
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s) in the logs of {state}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
