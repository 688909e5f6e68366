"""services.kafka_sink.consume_available, as pure logic: the calls it makes on a consumer.

`Consumer.consume(n, timeout)` waits until it has n messages or the timeout has passed (checked against a real
broker while finding why lone alerts reached PostgreSQL up to a second late); consume_available waits only for
the first message and takes what else is at hand without waiting. The sink loop itself runs against real Kafka
in test_alert_consumer.py and test_labels_consumer.py.
"""

from __future__ import annotations

from services.kafka_sink import consume_available


class RecordingConsumer:
    def __init__(self, first, held):
        self.first, self.held, self.calls = first, held, []

    def poll(self, timeout):
        self.calls.append(("poll", timeout))
        return self.first

    def consume(self, num_messages, timeout):
        self.calls.append(("consume", num_messages, timeout))
        return self.held[:num_messages]


def test_waits_for_the_first_message_only_then_takes_what_is_held():
    consumer = RecordingConsumer("m1", ["m2", "m3"])
    assert consume_available(consumer, 500, timeout=1.0) == ["m1", "m2", "m3"]
    assert consumer.calls == [("poll", 1.0), ("consume", 499, 0)]


def test_nothing_within_the_timeout_is_an_empty_batch():
    consumer = RecordingConsumer(None, ["never asked for"])
    assert consume_available(consumer, 500, timeout=0.5) == []
    assert consumer.calls == [("poll", 0.5)]


def test_a_batch_of_one_is_a_single_poll():
    consumer = RecordingConsumer("m1", ["m2"])
    assert consume_available(consumer, 1, timeout=1.0) == ["m1"]
    assert consumer.calls == [("poll", 1.0)]
