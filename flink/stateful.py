"""The job's keyed Flink state, all of it in the JVM: per-card history with rule pass 1, and per-terminal
context of the anomalies, each evaluated on arrival.

io.rtfd.flink.CardAnomalies (jvm/functions, a Java KeyedBroadcastProcessFunction) keeps each card's recent
history in Flink keyed state, computes the transaction's features as flink.features.CardHistory does and runs
rule pass 1 (flink.rules.engine.first_pass) with the rules topic broadcast to it; only the anomalies go on.
io.rtfd.flink.TerminalContext (a Java KeyedProcessFunction) keeps, per suspect terminal, the anomalous cards
seen there and when. Both streams reach them hash-partitioned in the JVM (flink.job.key_by_column), so no
Python runs per transaction here. Both were Python until 2026-11: a Python KeyedProcessFunction made a
velocity storm drain at 864/s (1,160/s with TerminalContext in Java; docs/benchmarks.md, session 5), and rule
pass 1 as a pandas UDF with a per-worker card cache held every transaction for a Python bundle (session 12).
State expires after CARD_STATE_TTL_DAYS / TERMINAL_STATE_TTL_DAYS without a write. This module also declares
the keyed streams' columns.
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream import DataStream
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes
from pyflink.table.types import BigIntType, DoubleType, IntType, VarCharType

from flink.features import CARD_FEATURES

TERMINAL_STATE_TTL_DAYS = 90
CARD_STATE_TTL_DAYS = 90

# what rule pass 1 reads (flink/sql/features.sql, view card_input), in this order
CARD_INPUT = ("transaction_id", "card_token", "customer_id", "bank_id", "amount_minor", "currency", "event_ms",
              "amount_eur", "device_id", "lat", "lon", "channel", "terminal_id")
_PASSED = CARD_INPUT[:8] + ("device_id",)  # input columns rule pass 1 passes on with its anomalies
# every column of the keyed streams, with its SQL type
COLUMN_TYPES = {
    "transaction_id": DataTypes.STRING(), "card_token": DataTypes.STRING(), "customer_id": DataTypes.STRING(),
    "bank_id": DataTypes.STRING(), "amount_minor": DataTypes.BIGINT(), "currency": DataTypes.STRING(),
    "event_ms": DataTypes.BIGINT(), "amount_eur": DataTypes.DOUBLE(), "device_id": DataTypes.STRING(),
    "lat": DataTypes.DOUBLE(), "lon": DataTypes.DOUBLE(), "channel": DataTypes.STRING(),
    "terminal_id": DataTypes.STRING(),
    "hist_n": DataTypes.INT(), "hist_sum_log": DataTypes.DOUBLE(), "hist_sumsq_log": DataTypes.DOUBLE(),
    "hist_span_s": DataTypes.DOUBLE(), "cnt_10m": DataTypes.INT(), "sum_eur_10m": DataTypes.DOUBLE(),
    "tiny_30m": DataTypes.INT(), "distance_km": DataTypes.DOUBLE(), "gap_s": DataTypes.DOUBLE(),
    "device_uses": DataTypes.INT(), "device_hist": DataTypes.INT(), "prev_pos_terminal": DataTypes.STRING(),
    "prev_pos_ms": DataTypes.BIGINT(), "suspect_terminal": DataTypes.STRING(), "suspect_cards": DataTypes.BIGINT(),
    "first_severity": DataTypes.STRING(), "terminal_key": DataTypes.STRING(),
}
# the same types as the DataStream API's type information
_TYPE_INFO = {VarCharType: Types.STRING, BigIntType: Types.LONG, IntType: Types.INT, DoubleType: Types.DOUBLE}
# anomalies of this pass-1 severity make a terminal suspect; LOW-only ones (a large purchase by itself, a
# mild burst) are common at any busy terminal and are only evaluated against it
COUNTED_SEVERITIES = frozenset({"MEDIUM", "HIGH", "CRITICAL"})
FEATURE_COLUMNS = (*_PASSED, *CARD_FEATURES)
# what rule pass 1 emits and TerminalContext reads: the features, the suspect terminal, the anomaly's pass-1
# severity and the key of the per-terminal state
ANOMALY_COLUMNS = (*FEATURE_COLUMNS, "suspect_terminal", "first_severity", "terminal_key")
CONTEXT_COLUMNS = (*ANOMALY_COLUMNS, "suspect_cards")


def row_type(columns: tuple[str, ...]):
    """The DataStream row type of `columns` (their COLUMN_TYPES)."""
    return Types.ROW_NAMED(list(columns), [_type_info(COLUMN_TYPES[c]) for c in columns])


def sql_row_type(columns: tuple[str, ...]):
    """The Table API row type of `columns` (a UDF's result type)."""
    return DataTypes.ROW([DataTypes.FIELD(c, COLUMN_TYPES[c]) for c in columns])


def _type_info(data_type):
    return _TYPE_INFO[type(data_type)]()


def terminal_context(keyed: DataStream, span_ms: int) -> DataStream:
    """Anomalies keyed by terminal_key (flink.job.key_by_column) -> CONTEXT_COLUMNS rows: how many distinct
    anomalous cards paid in person at that terminal within `span_ms` before, this one included (null without a
    suspect terminal). The JVM function io.rtfd.flink.TerminalContext (jvm/functions) holds the state."""
    gateway = get_gateway()
    severities = gateway.jvm.java.util.ArrayList()
    for severity in sorted(COUNTED_SEVERITIES):
        severities.add(severity)
    function = gateway.jvm.io.rtfd.flink.TerminalContext(
        ANOMALY_COLUMNS.index("suspect_terminal"), ANOMALY_COLUMNS.index("card_token"),
        ANOMALY_COLUMNS.index("event_ms"), ANOMALY_COLUMNS.index("first_severity"), span_ms, severities,
        TERMINAL_STATE_TTL_DAYS)
    j_stream = keyed._j_data_stream.process(function, row_type(CONTEXT_COLUMNS).get_java_type_info())
    return DataStream(j_stream.name("terminal context (per-terminal state)").uid("terminal-context-jvm"))



def card_features(keyed: DataStream, tiny_eur: float, input_columns: tuple[str, ...]) -> DataStream:
    """Transactions keyed by card_token (flink.job.key_by_column) -> rows of `input_columns` followed by
    CARD_FEATURES: each transaction's features from its card's history earlier in event time, as
    flink.features.CardHistory computes them. The JVM function io.rtfd.flink.CardFeatures (jvm/functions) holds
    the history in Flink keyed state, expiring after CARD_STATE_TTL_DAYS without a transaction on the card."""
    fields = [input_columns.index(c) for c in ("transaction_id", "event_ms", "amount_eur", "device_id", "lat",
                                               "lon", "channel", "terminal_id")]
    function = get_gateway().jvm.io.rtfd.flink.CardFeatures(*fields, float(tiny_eur), CARD_STATE_TTL_DAYS)
    j_stream = keyed._j_data_stream.process(function, row_type((*input_columns, *CARD_FEATURES)).get_java_type_info())
    return DataStream(j_stream.name("card features (per-card state)").uid("card-features-jvm"))


def card_anomalies(keyed: DataStream, rules: DataStream, tiny_eur: float, terminal_window_ms: int) -> DataStream:
    """Rule pass 1 in the JVM: transactions keyed by card_token (rows of CARD_INPUT) and the rules topic as a
    changelog of (rule_id, config) -> ANOMALY_COLUMNS rows of the transactions some rule flags. The JVM function
    io.rtfd.flink.CardAnomalies keeps each card's history in Flink keyed state (as flink.features.CardHistory
    computes it), the rule overrides in broadcast state, and runs flink.rules.engine.first_pass's rules."""
    from flink.rules.config import DEFAULTS_FILE

    gateway = get_gateway()
    jvm = gateway.jvm
    fields = [CARD_INPUT.index(c) for c in ("transaction_id", "event_ms", "amount_eur", "device_id", "lat", "lon",
                                            "channel", "terminal_id")]
    features = jvm.io.rtfd.flink.CardFeatures(*fields, float(tiny_eur), CARD_STATE_TTL_DAYS)
    passed = jvm.java.util.ArrayList()
    for column in _PASSED:
        passed.add(CARD_INPUT.index(column))
    function = jvm.io.rtfd.flink.CardAnomalies(
        features, passed, CARD_INPUT.index("card_token"), CARD_INPUT.index("event_ms"),
        CARD_INPUT.index("amount_eur"), CARD_INPUT.index("device_id"), DEFAULTS_FILE.read_text(),
        terminal_window_ms, CARD_STATE_TTL_DAYS)
    descriptors = gateway.new_array(jvm.org.apache.flink.api.common.state.MapStateDescriptor, 1)  # varargs
    descriptors[0] = jvm.io.rtfd.flink.CardAnomalies.ruleOverrides()
    broadcast = rules._j_data_stream.broadcast(descriptors)
    j_stream = keyed._j_data_stream.connect(broadcast).process(
        function, row_type(ANOMALY_COLUMNS).get_java_type_info())
    return DataStream(j_stream.name("rule pass 1 (per-card state)").uid("card-anomalies-jvm"))

