"""Committed-offset reads without servers: which consumer handle `kafka.group_committed` (and `rtfd status`'s
`consumer_lag`, the chaos probes' `group_offsets`) reads through, and who closes it. A fake handle stands in
for librdkafka's Consumer: it exposes only the calls these functions make."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition

from rtfd.chaos import probes
from rtfd.config import Settings
from rtfd.stack import kafka, status

NOTHING_COMMITTED = -1001  # librdkafka's OFFSET_INVALID


class FakeHandle:
    """A never-subscribed consumer handle of one group: topic metadata, committed offsets, end offsets."""

    def __init__(self, committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]):
        self._committed = committed
        self._ends = ends
        self.asked: list[list[tuple[str, int]]] = []
        self.closed = 0

    def _live(self) -> None:
        assert not self.closed, "used after close"

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        self._live()
        names = {t for t, _p in self._ends} | {"__consumer_offsets"}
        meta = {t: SimpleNamespace(partitions={p: None for (n, p) in self._ends if n == t}) for t in names}
        return SimpleNamespace(topics=meta if topic is None else {topic: meta[topic]})

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        self._live()
        self.asked.append([(tp.topic, tp.partition) for tp in partitions])
        return [TopicPartition(tp.topic, tp.partition, self._committed.get((tp.topic, tp.partition),
                                                                           NOTHING_COMMITTED))
                for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1) -> tuple[int, int]:
        self._live()
        return 0, self._ends[(tp.topic, tp.partition)]

    def subscribe(self, *_args, **_kwargs):
        raise AssertionError("a committed-offset handle must never subscribe (it would join the group)")

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(_env_file=None, state_dir=tmp_path)


def fake() -> FakeHandle:
    return FakeHandle(committed={("transactions", 0): 40, ("transactions", 2): 7, ("fraud-alerts", 0): 3},
                      ends={("transactions", 0): 50, ("transactions", 1): 9, ("transactions", 2): 7,
                            ("fraud-alerts", 0): 5})


def no_new_handles(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("opened a new consumer handle although one was passed")

    monkeypatch.setattr(kafka, "group_handle", refuse)
    monkeypatch.setattr(kafka, "Consumer", refuse)


def test_group_committed_reads_through_a_passed_handle_and_leaves_it_open(settings, monkeypatch):
    handle = fake()
    no_new_handles(monkeypatch)
    for _tick in range(3):  # a sampler asks every second through the same handle
        got = kafka.group_committed(settings, "rtfd-flink", consumer=handle)
        assert got == {("transactions", 0): 40, ("transactions", 2): 7, ("fraud-alerts", 0): 3}
    assert handle.closed == 0
    assert len(handle.asked) == 3 and all(("__consumer_offsets", 0) not in ask for ask in handle.asked)
    assert kafka.group_committed(settings, "rtfd-flink", ["transactions"], consumer=handle) == {
        ("transactions", 0): 40, ("transactions", 2): 7}
    assert kafka.group_committed(settings, "rtfd-flink", ["missing"], consumer=handle) == {}
    assert handle.closed == 0


def test_group_committed_without_a_handle_opens_one_of_the_group_and_closes_it(settings, monkeypatch):
    opened: list[tuple[str, FakeHandle]] = []

    def group_handle(_settings, group, **_conf):
        opened.append((group, fake()))
        return opened[-1][1]

    monkeypatch.setattr(kafka, "group_handle", group_handle)
    assert kafka.group_committed(settings, "rtfd-flink", ["transactions"]) == {("transactions", 0): 40,
                                                                                ("transactions", 2): 7}
    assert [(group, handle.closed) for group, handle in opened] == [("rtfd-flink", 1)]


def test_group_handle_carries_the_group_id_and_never_auto_commits(settings, monkeypatch):
    confs: list[dict] = []
    monkeypatch.setattr(kafka, "Consumer", lambda conf: confs.append(conf) or "handle")
    assert kafka.group_handle(settings, "rtfd-flink", logger="quiet") == "handle"
    assert confs[0]["group.id"] == "rtfd-flink"
    assert confs[0]["enable.auto.commit"] is False
    assert confs[0]["logger"] == "quiet"


def test_consumer_lag_uses_the_passed_group_handles(settings, monkeypatch):
    handle, probe = fake(), fake()
    no_new_handles(monkeypatch)
    rows = status.consumer_lag(settings, ["rtfd-flink"], client=None, probe=probe,
                               group_handles={"rtfd-flink": handle})
    # partition 1 was never committed on: as `rtfd status` counts it, it adds nothing
    assert rows == [{"group": "rtfd-flink", "topic": "fraud-alerts", "lag": 2},
                    {"group": "rtfd-flink", "topic": "transactions", "lag": 10}]
    assert handle.closed == 0 and probe.closed == 0
    assert len(handle.asked) == 1 and not probe.asked


def test_chaos_group_offsets_reads_through_group_committed_on_its_own_handle(settings, monkeypatch):
    opened: list[tuple[str, dict, FakeHandle]] = []

    def group_handle(_settings, group, **conf):
        opened.append((group, conf, fake()))
        return opened[-1][2]

    calls = []
    real = kafka.group_committed

    def group_committed(*args, **kwargs):
        calls.append((args[1:], kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(kafka, "group_handle", group_handle)
    monkeypatch.setattr(kafka, "group_committed", group_committed)
    committed, end = probes.group_offsets(settings, "rtfd-alert-consumer", "transactions")
    assert committed == {0: 40, 2: 7}  # partition 1 never committed on: left out, which callers read as 0
    assert end == {0: 50, 1: 9, 2: 7}
    [(group, conf, handle)] = opened
    assert group == "rtfd-alert-consumer" and conf == {"logger": probes._quiet}
    assert calls == [(("rtfd-alert-consumer", ["transactions"]), {"consumer": handle})]
    assert handle.closed == 1
