"""The producers' token-bucket pacing (pure logic, on a fake clock)."""

from __future__ import annotations

import pytest

from services.producer import sender
from services.producer.sender import Pacer


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("rate", [20.0, 500.0, 2000.0, 10_000.0])
def test_the_pacer_keeps_its_rate_and_idles_in_whole_milliseconds(monkeypatch, rate):
    """The producer loop: send what is allowed, else idle for wait() in librdkafka's poll, which counts whole
    milliseconds. A wait under MIN_WAIT_S made that poll return at once and the loop spin."""
    clock = FakeClock()
    monkeypatch.setattr(sender.time, "monotonic", clock)
    pacer = Pacer(rate)
    batches = 0
    while clock.now < 110.0:
        n = pacer.allowance()
        pacer.took(n)
        batches += n > 0
        if n == 0:
            idle = pacer.wait()
            assert Pacer.MIN_WAIT_S <= idle <= 0.05
            clock.now += idle
        else:
            clock.now += 1e-5  # sending takes a little time
    assert pacer.sent == pytest.approx(rate * 10, rel=0.01, abs=2)
    # a batch per MIN_WAIT_S at most: never one loop per message at high rates
    assert batches <= 10 / Pacer.MIN_WAIT_S * 1.2


def test_a_pacer_that_fell_behind_does_not_idle_and_catches_up_in_bursts(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(sender.time, "monotonic", clock)
    pacer = Pacer(1000.0)
    clock.now += 1.0  # a stall: 1,000 messages are due
    assert pacer.wait() == 0.0
    assert pacer.allowance() == pacer.burst == 100  # one burst per call, never all of them at once
    assert Pacer(None).allowance() == 10_000 and Pacer(None).wait() == 0.0
