"""The job's Python UDFs: thin PyFlink wrappers around pure code (flink.features, flink.rules.engine, flink.alerts).
Decoding runs in the JVM (flink.decode.jvm_decoder).

Everything a UDF needs (registry URL, Kafka client configuration, rules topic) comes through its constructor: the
Python workers run inside TaskManagers and may not see the client's RTFD_* environment.
"""

from __future__ import annotations

from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, udf


class EvaluateRules:
    """The rules over rows of flink.rules.engine.FEATURES columns -> alert_id, rules, score, severity, reasons
    (flink.rules.engine.evaluate; null where no rule fired), with the rules of defaults.json and the live
    `fraud-rules` topic. Rule pass 2 (RaiseAlerts) holds one; open() starts its rule feed in the Python
    worker. (Rule pass 1 runs in the JVM: io.rtfd.flink.CardAnomalies, the rules topic broadcast to it.)"""

    def __init__(self, kafka_conf: dict[str, str], rules_topic: str):
        self.kafka_conf = kafka_conf  # the rule feed's librdkafka configuration (JobConfig.rule_feed_conf)
        self.rules_topic = rules_topic
        self.feed = None

    def open(self, function_context):
        from flink.rules.config import RuleFeed

        self.feed = RuleFeed(self.kafka_conf, self.rules_topic).start()
        # evaluate with the current rule set from the first record on (bounded: a missing topic means defaults)
        self.feed.wait_caught_up(15.0)
        freeze_survivors_of_full_collections()

    def eval(self, *columns):
        import pandas as pd

        from flink.rules.engine import FEATURES, evaluate

        # constant arguments (e.g. a NULL literal) arrive as scalars, not Series
        n = next(len(c) for c in columns if isinstance(c, pd.Series))
        frame = pd.DataFrame({name: c.reset_index(drop=True) if isinstance(c, pd.Series) else pd.Series([c] * n)
                              for c, name in zip(columns, FEATURES, strict=True)})
        return evaluate(frame, self.feed.rules)

    def close(self):
        if self.feed is not None:
            self.feed.stop()


class RaiseAlerts(ScalarFunction):
    """raise_alerts(<flink.rules.engine.FEATURES columns>, card_token, customer_id, bank_id, amount_minor,
    currency, event_ms) -> BYTES: rule pass 2 over an anomaly in its terminal context and, where a rule fired,
    the alert in the fraud_alert contract and Confluent wire format (flink.alerts); null where none fired.

    One Python step. As two UDFs (evaluate, then encode) with the SQL filter between them, the planner made two
    Python operators, and an alert waited for a bundle in each (docs/benchmarks.md, session 9)."""

    CONTEXT = ("card_token", "customer_id", "bank_id", "amount_minor", "currency", "event_ms")
    """The columns after the features, which only the alert needs."""

    def __init__(self, kafka_conf: dict[str, str], rules_topic: str, registry_url: str, subject: str):
        self.rules = EvaluateRules(kafka_conf, rules_topic)
        self.registry_url = registry_url
        self.subject = subject
        self.encoder = None

    def open(self, function_context):
        import schemas
        from flink.alerts import AlertEncoder, registered_id

        self.encoder = AlertEncoder(registered_id(self.registry_url, self.subject, schemas.fraud_alert_schema()))
        self.rules.open(function_context)

    def eval(self, *columns):
        import pandas as pd

        from flink.rules.engine import FEATURES

        verdict = self.rules.eval(*columns[:len(FEATURES)])
        fired = verdict["rules"].notna().to_numpy()
        out = pd.Series([None] * len(verdict), dtype=object)
        if fired.any():
            # the transaction id is the first feature column; the rest of the alert comes after the features
            named = zip(("transaction_id", *self.CONTEXT), (columns[0], *columns[len(FEATURES):]), strict=True)
            context = pd.DataFrame({name: c.to_numpy()[fired] for name, c in named})
            alerts = pd.concat([verdict[fired].reset_index(drop=True), context], axis=1)
            alerts["event_time"] = alerts["event_ms"]
            out[fired] = self.encoder.encode_frame(alerts[list(self.encoder.FIELDS[:-1])]).to_numpy()
        return out

    def close(self):
        self.rules.close()


def raise_alerts(kafka_conf: dict[str, str], rules_topic: str, registry_url: str, subject: str):
    return udf(RaiseAlerts(kafka_conf, rules_topic, registry_url, subject), result_type=DataTypes.BYTES(),
               func_type="pandas")


_gc_freezing = False


def freeze_survivors_of_full_collections() -> None:
    """Keep what has survived a full garbage collection out of the next ones, in this Python worker.

    A full (generation 2) collection walks every object the collector tracks: the worker's framework (Beam,
    PyFlink, pandas, Arrow; ~150,000 objects) and, while rule pass 1 ran in Python, its card cache (10^5
    cards). Measured in the bench at 2,000 tx/s, each one paused the worker for 0.15-0.6 s, the tail of the
    alert latency. gc.freeze() moves the survivors to a generation the collector skips; they are still freed
    by reference counting when dropped (a finished bundle), only garbage in reference cycles among them is kept, and the
    worker makes little: ~55 objects per full collection, measured (docs/benchmarks.md, session 9)."""
    import gc

    global _gc_freezing
    if _gc_freezing:  # once per worker process
        return
    _gc_freezing = True
    gc.collect()
    gc.freeze()

    def after_collection(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    gc.callbacks.append(after_collection)
