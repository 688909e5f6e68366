package io.rtfd.flink;

import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The per-terminal context of compromised_terminal, in Flink keyed state (checkpointed with the job).
 *
 * <p>Input: the anomalies of rule pass 1, keyed by their suspect terminal (or by card when they have none).
 * Output: each input row with one more field, suspect_cards: how many distinct anomalous cards paid in person
 * at that terminal within {@code spanMs} before this anomaly (by event time), this one included; null without a
 * suspect terminal. An anomaly whose pass-1 severity is among {@code countedSeverities} is remembered; the
 * others (a LOW-only anomaly: a large purchase by itself is no sign of a skimmer) are evaluated against the
 * terminal's count but add nothing to it. The same logic as flink/features.py TerminalHistory, which the
 * unit tests and the rule tuning run; state: card token -> event time of its latest counted anomaly there,
 * pruned to the span, expiring after {@code ttlDays} without a write.
 */
public class TerminalContext extends KeyedProcessFunction<Object, Row, Row> {
    private static final long serialVersionUID = 1L;

    private final int terminalField;
    private final int cardField;
    private final int timeField;
    private final int severityField;
    private final long spanMs;
    private final Set<String> countedSeverities;
    private final int ttlDays;
    private transient MapState<String, Long> cards;

    public TerminalContext(int terminalField, int cardField, int timeField, int severityField, long spanMs,
                           List<String> countedSeverities, int ttlDays) {
        this.terminalField = terminalField;
        this.cardField = cardField;
        this.timeField = timeField;
        this.severityField = severityField;
        this.spanMs = spanMs;
        this.countedSeverities = new HashSet<>(countedSeverities);
        this.ttlDays = ttlDays;
    }

    @Override
    public void open(OpenContext openContext) {
        MapStateDescriptor<String, Long> descriptor =
                new MapStateDescriptor<>("terminal_cards", Types.STRING, Types.LONG);
        descriptor.enableTimeToLive(StateExpiry.afterDaysWithoutWrite(ttlDays));
        cards = getRuntimeContext().getMapState(descriptor);
    }

    @Override
    public void processElement(Row value, Context ctx, Collector<Row> out) throws Exception {
        int arity = value.getArity();
        Row result = Row.withPositions(value.getKind(), arity + 1);
        for (int i = 0; i < arity; i++) {
            result.setField(i, value.getField(i));
        }
        if (value.getField(terminalField) == null) {
            out.collect(result);
            return;
        }
        String card = (String) value.getField(cardField);
        long t = ((Number) value.getField(timeField)).longValue();
        if (countedSeverities.contains((String) value.getField(severityField))) {
            Long seen = cards.get(card);
            cards.put(card, seen == null ? t : Math.max(seen, t));
            long newest = Long.MIN_VALUE;
            for (Long at : cards.values()) {
                newest = Math.max(newest, at);
            }
            Iterator<Map.Entry<String, Long>> entries = cards.iterator();
            while (entries.hasNext()) {
                if (entries.next().getValue() < newest - spanMs) {
                    entries.remove();
                }
            }
        }
        long others = 0;
        for (Map.Entry<String, Long> entry : cards.entries()) {
            long at = entry.getValue();
            if (t - spanMs <= at && at <= t && !entry.getKey().equals(card)) {
                others++;
            }
        }
        result.setField(arity, others + 1);
        out.collect(result);
    }
}
