"""The per-terminal state of compromised_terminal (io.rtfd.flink.TerminalContext, jvm/functions) on a local
Flink mini-cluster: the JVM function behind the JVM key selector gives every anomaly the count that
flink.features.TerminalHistory (the rule tuning's and unit tests' reference) gives it."""

from __future__ import annotations

from collections import defaultdict

import pytest
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from flink.config import jvm_jars
from flink.features import TerminalHistory
from flink.job import key_by_column
from flink.stateful import ANOMALY_COLUMNS, CONTEXT_COLUMNS, COUNTED_SEVERITIES, sql_row_type, terminal_context

pytestmark = pytest.mark.timeout(300)
MIN = 60_000
SPAN = 120 * MIN

# (card, event minute, suspect terminal, pass-1 severity), in arrival order; minute -200 arrives late
ANOMALIES = [
    ("a", 0, "T-1", "HIGH"), ("x", 0, "T-2", "MEDIUM"), ("a", 1, "T-1", "HIGH"), ("b", 2, "T-1", "MEDIUM"),
    ("online", 2, None, "HIGH"), ("low", 3, "T-1", "LOW"), ("c", 4, "T-1", "CRITICAL"), ("y", 5, "T-2", "HIGH"),
    ("late", -200, "T-1", "HIGH"), ("d", 122, "T-1", "HIGH"), ("z", 200, "T-2", "HIGH"),
]


def anomaly_row(i: int, card: str, minute: int, terminal: str | None, severity: str) -> tuple:
    values = dict.fromkeys(ANOMALY_COLUMNS)
    values.update(transaction_id=f"tx-{i}", card_token=card, event_ms=minute * MIN, suspect_terminal=terminal,
                  first_severity=severity, terminal_key=f"terminal:{terminal}" if terminal else f"card:{card}")
    return tuple(values[c] for c in ANOMALY_COLUMNS)


def expected() -> dict[str, int | None]:
    terminals: dict[str, TerminalHistory] = defaultdict(TerminalHistory)
    out = {}
    for i, (card, minute, terminal, severity) in enumerate(ANOMALIES):
        out[f"tx-{i}"] = None if terminal is None else terminals[terminal].suspect_cards(
            card, minute * MIN, SPAN, counts=severity in COUNTED_SEVERITIES)
    return out


def test_jvm_terminal_context_counts_like_the_reference():
    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(jar.as_uri() for jar in jvm_jars()))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)  # one source, arrival order kept through the keyed exchange
    t_env = StreamTableEnvironment.create(env)
    rows = [anomaly_row(i, *a) for i, a in enumerate(ANOMALIES)]
    anomalies = t_env.from_elements(rows, sql_row_type(ANOMALY_COLUMNS))
    context = terminal_context(key_by_column(t_env.to_data_stream(anomalies), "terminal_key"), SPAN)
    with context.execute_and_collect() as results:
        got = {r[CONTEXT_COLUMNS.index("transaction_id")]: r[CONTEXT_COLUMNS.index("suspect_cards")] for r in results}
    assert got == expected()
    assert got["tx-6"] == 3 and got["tx-9"] == 3 and got["tx-4"] is None  # c: a, b, c; d: b, c, d; online: none
