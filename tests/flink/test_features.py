"""Per-card and per-terminal state (flink/features.py), the pure part of the job's keyed functions."""

from __future__ import annotations

import pickle

import pytest

from flink.features import HISTORY_ROWS, CardHistory, TerminalHistory
from services.producer.world import distance_km

MIN = 60_000
TINY = 2.5


def add(card: CardHistory, t: int, eur: float = 20.0, **kw) -> dict:
    args = {"device_id": None, "lat": None, "lon": None, "channel": "ECOM", "terminal_id": None, **kw}
    return card.features(f"tx-{t}-{eur}", t, eur, TINY, args["device_id"], args["lat"], args["lon"], args["channel"],
                         args["terminal_id"])


def test_a_late_transaction_sees_only_what_came_before_it_in_event_time():
    card = CardHistory()
    for i in range(5):
        add(card, 100 * MIN + i * MIN, eur=1.0)  # five tiny probes at 100..104 min
    late = add(card, 90 * MIN, eur=900.0)  # arrives last, happened first
    assert late["hist_n"] == 0 and late["tiny_30m"] == 0 and late["cnt_10m"] == 1
    on_time = add(card, 105 * MIN, eur=900.0)
    assert on_time["hist_n"] == 6 and on_time["tiny_30m"] == 5 and on_time["cnt_10m"] == 6  # 90 min: > 10 ago


def test_card_testing_sent_out_of_order_is_still_seen():
    """Probes and the large charge arrive shuffled: the charge still counts every probe before it."""
    card = CardHistory()
    large_at = 10 * MIN
    add(card, 9 * MIN, eur=1.0)
    add(card, 8 * MIN, eur=1.0)
    add(card, 9 * MIN + 30_000, eur=1.0)
    assert add(card, large_at, eur=900.0)["tiny_30m"] == 3


def test_velocity_and_tiny_windows_are_event_time_ranges():
    card = CardHistory()
    add(card, 0, eur=1.0)
    add(card, 25 * MIN, eur=1.0)
    f = add(card, 31 * MIN, eur=50.0)
    assert f["tiny_30m"] == 1  # the probe at 0 is 31 minutes old
    assert f["cnt_10m"] == 2 and f["sum_eur_10m"] == 51.0


def test_history_is_bounded_but_travel_and_terminal_reach_back():
    card = CardHistory()
    add(card, 0, lat=47.37, lon=8.54, channel="POS", terminal_id="T-ZRH-1")
    for i in range(HISTORY_ROWS + 20):
        add(card, 60 * MIN + i * MIN)  # online, no position, over an hour later
    assert len(card.entries) <= HISTORY_ROWS + 30
    f = add(card, 200 * MIN, lat=52.52, lon=13.40)
    assert f["hist_n"] == HISTORY_ROWS
    assert f["distance_km"] == pytest.approx(distance_km(47.37, 8.54, 52.52, 13.40))
    assert f["gap_s"] == 200 * 60 and f["prev_pos_terminal"] == "T-ZRH-1" and f["prev_pos_ms"] == 0


def test_device_novelty_and_history():
    card = CardHistory()
    assert add(card, 0, device_id="d1")["device_uses"] == 1
    assert add(card, MIN, device_id="d1")["device_uses"] == 2
    f = add(card, 2 * MIN, device_id="d2")
    assert f["device_uses"] == 1 and f["device_hist"] == 2


def test_state_survives_pickling():  # what the keyed state stores
    card = CardHistory()
    add(card, 0, lat=1.0, lon=2.0, device_id="d")
    again = pickle.loads(pickle.dumps(card))
    assert add(again, MIN, lat=1.0, lon=2.0, device_id="d") == add(card, MIN, lat=1.0, lon=2.0, device_id="d")


def test_terminal_counts_distinct_cards_in_the_span_and_low_anomalies_do_not_count():
    terminal = TerminalHistory()
    span = 120 * MIN
    assert terminal.suspect_cards("a", 0, span) == 1
    assert terminal.suspect_cards("a", MIN, span) == 1  # same card again
    assert terminal.suspect_cards("b", 2 * MIN, span) == 2
    assert terminal.suspect_cards("low", 3 * MIN, span, counts=False) == 3  # sees a and b ...
    assert terminal.suspect_cards("c", 4 * MIN, span) == 3  # ... but adds nothing
    assert terminal.suspect_cards("late", -200 * MIN, span) == 1  # long before: none of them in its span
    assert terminal.suspect_cards("d", 122 * MIN, span) == 3  # a (1 min) fell out of the span; b, c, d


def test_a_replayed_transaction_is_not_counted_twice():
    """After a failure the job replays from its checkpoint: a replayed row sees the history before it, without
    itself, and is remembered once."""
    card = CardHistory()
    card.features("a-1", 0, 1.0, TINY, None, None, None, None, None)
    card.features("a-2", MIN, 1.0, TINY, None, None, None, None, None)
    replayed = card.features("a-2", MIN, 1.0, TINY, None, None, None, None, None)
    new = card.features("a-3", 2 * MIN, 900.0, TINY, None, None, None, None, None)
    assert replayed["hist_n"] == 1 and replayed["tiny_30m"] == 1
    assert new["hist_n"] == 2 and new["tiny_30m"] == 2
    assert len(card.entries) == 3 and card.devices == {None: 3}
