"""The job's keyed state: per-card features and per-terminal context, evaluated on each arrival.

Two Python KeyedProcessFunctions wrap the pure classes of flink.features: `CardFeatures` (keyed by
card_token; one pickled CardHistory per card) and `TerminalContext` (the anomalies keyed by the terminal the
card last paid at in person; one TerminalHistory per terminal). Their rows go back into the Table API for
the vectorized rule UDF. Card state expires after CARD_STATE_TTL_DAYS without a transaction.
"""

from __future__ import annotations

from pyflink.common import Row, Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from flink.features import CARD_FEATURES, CardHistory, TerminalHistory

CARD_STATE_TTL_DAYS = 90

# what CardFeatures reads (flink/sql/features.sql, view card_input), in this order
CARD_INPUT = ("transaction_id", "card_token", "customer_id", "bank_id", "amount_minor", "currency", "event_ms",
              "amount_eur", "device_id", "lat", "lon", "channel", "terminal_id")
_PASSED = CARD_INPUT[:8] + ("device_id",)  # input columns CardFeatures passes on
_TYPES = {
    "transaction_id": Types.STRING(), "card_token": Types.STRING(), "customer_id": Types.STRING(),
    "bank_id": Types.STRING(), "amount_minor": Types.LONG(), "currency": Types.STRING(), "event_ms": Types.LONG(),
    "amount_eur": Types.DOUBLE(), "device_id": Types.STRING(), "hist_n": Types.INT(),
    "hist_sum_log": Types.DOUBLE(), "hist_sumsq_log": Types.DOUBLE(), "hist_span_s": Types.DOUBLE(),
    "cnt_10m": Types.INT(), "sum_eur_10m": Types.DOUBLE(), "tiny_30m": Types.INT(), "distance_km": Types.DOUBLE(),
    "gap_s": Types.DOUBLE(), "device_uses": Types.INT(), "device_hist": Types.INT(),
    "prev_pos_terminal": Types.STRING(), "prev_pos_ms": Types.LONG(), "suspect_terminal": Types.STRING(),
    "suspect_cards": Types.LONG(), "first_severity": Types.STRING(),
}
# anomalies of this pass-1 severity make a terminal suspect; LOW-only ones (a large purchase by itself, a
# mild burst) are common at any busy terminal and are only evaluated against it
COUNTED_SEVERITIES = frozenset({"MEDIUM", "HIGH", "CRITICAL"})
FEATURE_COLUMNS = (*_PASSED, *CARD_FEATURES)
# what TerminalContext reads (flink/sql/anomalies.sql, view anomalies): the features, the suspect terminal
# and the anomaly's severity in rule pass 1
ANOMALY_COLUMNS = (*FEATURE_COLUMNS, "suspect_terminal", "first_severity")
CONTEXT_COLUMNS = (*ANOMALY_COLUMNS, "suspect_cards")


def row_type(columns: tuple[str, ...]):
    return Types.ROW_NAMED(list(columns), [_TYPES[c] for c in columns])


def _pickled_state(runtime_context: RuntimeContext, name: str, ttl_days: int | None = None):
    descriptor = ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY())
    if ttl_days:
        descriptor.enable_time_to_live(StateTtlConfig.new_builder(Time.days(ttl_days))
                                       .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                                       .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                                       .build())
    return runtime_context.get_state(descriptor)


class CardFeatures(KeyedProcessFunction):
    """card_input rows, keyed by card_token -> FEATURE_COLUMNS rows, one per transaction, on arrival."""

    def __init__(self, tiny_eur: float):
        self.tiny_eur = tiny_eur
        self.state = None

    def open(self, runtime_context: RuntimeContext):
        self.state = _pickled_state(runtime_context, "card_history", CARD_STATE_TTL_DAYS)

    def process_element(self, value, ctx):
        tx = dict(zip(CARD_INPUT, value, strict=True))
        history = self.state.value() or CardHistory()
        features = history.features(tx["event_ms"], tx["amount_eur"], self.tiny_eur, tx["device_id"], tx["lat"],
                                    tx["lon"], tx["channel"], tx["terminal_id"])
        self.state.update(history)
        yield Row(*(tx[c] for c in _PASSED), *(features[c] for c in CARD_FEATURES))


class TerminalContext(KeyedProcessFunction):
    """Anomalies keyed by suspect terminal (or by card, when they have none) -> CONTEXT_COLUMNS rows: how many
    distinct anomalous cards paid in person at that terminal within `span_ms` before, this one included."""

    def __init__(self, span_ms: int):
        self.span_ms = span_ms
        self.state = None

    def open(self, runtime_context: RuntimeContext):
        self.state = _pickled_state(runtime_context, "terminal_history", CARD_STATE_TTL_DAYS)

    def process_element(self, value, ctx):
        terminal = value[ANOMALY_COLUMNS.index("suspect_terminal")]
        if terminal is None:
            yield Row(*value, None)
            return
        history = self.state.value() or TerminalHistory()
        cards = history.suspect_cards(value[ANOMALY_COLUMNS.index("card_token")],
                                      value[ANOMALY_COLUMNS.index("event_ms")], self.span_ms,
                                      counts=value[ANOMALY_COLUMNS.index("first_severity")] in COUNTED_SEVERITIES)
        self.state.update(history)
        yield Row(*value, cards)


def terminal_key(value) -> str:
    """Anomalies with a suspect terminal meet in that terminal's state; the others need none (their card)."""
    terminal = value[ANOMALY_COLUMNS.index("suspect_terminal")]
    return f"terminal:{terminal}" if terminal is not None else f"card:{value[1]}"
