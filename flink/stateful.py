"""The job's keyed Flink state: per-terminal context of the anomalies, evaluated on each arrival.

`TerminalContext` (a Python KeyedProcessFunction) keeps one pickled TerminalHistory per suspect terminal in
Flink's keyed state, checkpointed with the job. Only anomalies (rule pass 1, a few per thousand transactions)
pass through it, so its per-record state round trips to the JVM do not matter; the per-card history every
transaction needs lives in the card_anomalies UDF's cache instead (flink/features.py says why). Terminal state
expires after TERMINAL_STATE_TTL_DAYS without an anomaly there.
"""

from __future__ import annotations

from pyflink.common import Row, Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor
from pyflink.table import DataTypes
from pyflink.table.types import BigIntType, DoubleType, IntType, VarCharType

from flink.features import CARD_FEATURES, TerminalHistory

TERMINAL_STATE_TTL_DAYS = 90

# what card_anomalies reads (flink/sql/features.sql, view card_input), in this order
CARD_INPUT = ("transaction_id", "card_token", "customer_id", "bank_id", "amount_minor", "currency", "event_ms",
              "amount_eur", "device_id", "lat", "lon", "channel", "terminal_id")
_PASSED = CARD_INPUT[:8] + ("device_id",)  # input columns the `anomalies` view passes on
# every column of the keyed streams and of the card_anomalies UDF's result (flink/udfs.py), with its SQL type
COLUMN_TYPES = {
    "transaction_id": DataTypes.STRING(), "card_token": DataTypes.STRING(), "customer_id": DataTypes.STRING(),
    "bank_id": DataTypes.STRING(), "amount_minor": DataTypes.BIGINT(), "currency": DataTypes.STRING(),
    "event_ms": DataTypes.BIGINT(), "amount_eur": DataTypes.DOUBLE(), "device_id": DataTypes.STRING(),
    "hist_n": DataTypes.INT(), "hist_sum_log": DataTypes.DOUBLE(), "hist_sumsq_log": DataTypes.DOUBLE(),
    "hist_span_s": DataTypes.DOUBLE(), "cnt_10m": DataTypes.INT(), "sum_eur_10m": DataTypes.DOUBLE(),
    "tiny_30m": DataTypes.INT(), "distance_km": DataTypes.DOUBLE(), "gap_s": DataTypes.DOUBLE(),
    "device_uses": DataTypes.INT(), "device_hist": DataTypes.INT(), "prev_pos_terminal": DataTypes.STRING(),
    "prev_pos_ms": DataTypes.BIGINT(), "suspect_terminal": DataTypes.STRING(), "suspect_cards": DataTypes.BIGINT(),
    "first_severity": DataTypes.STRING(),
}
# the same types as the DataStream API's type information
_TYPE_INFO = {VarCharType: Types.STRING, BigIntType: Types.LONG, IntType: Types.INT, DoubleType: Types.DOUBLE}
# anomalies of this pass-1 severity make a terminal suspect; LOW-only ones (a large purchase by itself, a
# mild burst) are common at any busy terminal and are only evaluated against it
COUNTED_SEVERITIES = frozenset({"MEDIUM", "HIGH", "CRITICAL"})
FEATURE_COLUMNS = (*_PASSED, *CARD_FEATURES)
# what TerminalContext reads (flink/sql/anomalies.sql, view anomalies): the features, the suspect terminal
# and the anomaly's severity in rule pass 1
ANOMALY_COLUMNS = (*FEATURE_COLUMNS, "suspect_terminal", "first_severity")
CONTEXT_COLUMNS = (*ANOMALY_COLUMNS, "suspect_cards")


def row_type(columns: tuple[str, ...]):
    """The DataStream row type of `columns` (their COLUMN_TYPES)."""
    return Types.ROW_NAMED(list(columns), [_type_info(COLUMN_TYPES[c]) for c in columns])


def sql_row_type(columns: tuple[str, ...]):
    """The Table API row type of `columns` (a UDF's result type)."""
    return DataTypes.ROW([DataTypes.FIELD(c, COLUMN_TYPES[c]) for c in columns])


def _type_info(data_type):
    return _TYPE_INFO[type(data_type)]()


def _pickled_state(runtime_context: RuntimeContext, name: str, ttl_days: int | None = None):
    descriptor = ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY())
    if ttl_days:
        descriptor.enable_time_to_live(StateTtlConfig.new_builder(Time.days(ttl_days))
                                       .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                                       .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                                       .build())
    return runtime_context.get_state(descriptor)


class TerminalContext(KeyedProcessFunction):
    """Anomalies keyed by suspect terminal (or by card, when they have none) -> CONTEXT_COLUMNS rows: how many
    distinct anomalous cards paid in person at that terminal within `span_ms` before, this one included."""

    def __init__(self, span_ms: int):
        self.span_ms = span_ms
        self.state = None

    def open(self, runtime_context: RuntimeContext):
        self.state = _pickled_state(runtime_context, "terminal_history", TERMINAL_STATE_TTL_DAYS)

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
