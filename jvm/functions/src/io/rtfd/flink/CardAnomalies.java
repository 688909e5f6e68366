package io.rtfd.flink;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.BroadcastState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.types.RowKind;
import org.apache.flink.util.Collector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Rule pass 1 on every transaction, in the JVM: the card's features from its history in Flink keyed state
 * ({@link CardFeatures#compute}), then the rules without terminal context ({@link FirstPassRules}); only the
 * anomalies go on.
 *
 * <p>Keyed input: transactions (flink.stateful.CARD_INPUT) keyed by card token. Broadcast input: the compacted
 * {@code fraud-rules} topic as a changelog of (rule id, JSON text), a tombstone as a DELETE; each instance keeps
 * the overrides in broadcast state (checkpointed with the job) and evaluates with defaults.json merged with
 * them, so a rule change applies to the transactions that arrive after it, without a restart. An override that
 * flink/rules/config.py would refuse is logged, counted ({@code ruleOverridesRefused}) and ignored.
 *
 * <p>Output, for each transaction some rule flags (flink.stateful.ANOMALY_COLUMNS): the input fields at
 * {@code passedFields}, the card features, the suspect terminal (where the card last paid in person, at most
 * {@code terminalWindowMs} before; null otherwise), the pass-1 severity and the key of the per-terminal state
 * ("terminal:" + suspect terminal, else "card:" + card token).
 */
public class CardAnomalies extends KeyedBroadcastProcessFunction<Object, Row, Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(CardAnomalies.class);
    /** What each row gains after the passed fields and the features. */
    public static final int EXTRA_FIELDS = 3;

    private final CardFeatures features;
    private final int[] passedFields;
    private final int cardField;
    private final int timeField;
    private final int amountField;
    private final int deviceField;
    private final String defaultsJson;
    private final long terminalWindowMs;
    private final int ttlDays;
    private transient ValueState<CardFeatures.CardState> card;
    private transient FirstPassRules defaults;
    private transient FirstPassRules rules;  // null: rebuild from the broadcast state before the next row
    private transient Counter refused;

    public CardAnomalies(CardFeatures features, List<Integer> passedFields, int cardField, int timeField,
                         int amountField, int deviceField, String defaultsJson, long terminalWindowMs, int ttlDays) {
        this.features = features;
        this.passedFields = passedFields.stream().mapToInt(Integer::intValue).toArray();
        this.cardField = cardField;
        this.timeField = timeField;
        this.amountField = amountField;
        this.deviceField = deviceField;
        this.defaultsJson = defaultsJson;
        this.terminalWindowMs = terminalWindowMs;
        this.ttlDays = ttlDays;
    }

    /** The broadcast state of the rule overrides: rule id -> the topic record's JSON text. */
    public static MapStateDescriptor<String, String> ruleOverrides() {
        return new MapStateDescriptor<>("rule_overrides", Types.STRING, Types.STRING);
    }

    @Override
    public void open(OpenContext openContext) {
        card = getRuntimeContext().getState(CardFeatures.historyState(ttlDays));
        defaults = FirstPassRules.fromDefaults(defaultsJson);
        rules = null;
        refused = getRuntimeContext().getMetricGroup().counter("ruleOverridesRefused");
    }

    @Override
    public void processBroadcastElement(Row record, Context ctx, Collector<Row> out) throws Exception {
        String[] change = ruleChange(record);
        if (change == null) {
            return;
        }
        String ruleId = change[0];
        String config = change[1];
        BroadcastState<String, String> overrides = ctx.getBroadcastState(ruleOverrides());
        if (config == null) {
            overrides.remove(ruleId);
        } else {
            String refusal = defaults.refusal(ruleId, config);
            if (refusal != null) {
                LOG.error("ignoring invalid config: {}", refusal);
                refused.inc();
                return;
            }
            overrides.put(ruleId, config);
        }
        rules = null;
        LOG.info("rule {} now {}", ruleId, config == null ? "back to its default" : config);
    }

    /**
     * What a record of the rules changelog does: {rule id, its override's JSON text}, the text null when the
     * rule goes back to its default (a tombstone, which arrives as DELETE); null when the record changes
     * nothing (no rule id, or the UPDATE_BEFORE half of an update, whose UPDATE_AFTER follows).
     */
    public static String[] ruleChange(Row record) {
        String ruleId = (String) record.getField(0);
        if (ruleId == null || ruleId.isEmpty() || record.getKind() == RowKind.UPDATE_BEFORE) {
            return null;
        }
        return new String[] {ruleId, record.getKind() == RowKind.DELETE ? null : (String) record.getField(1)};
    }

    @Override
    public void processElement(Row value, ReadOnlyContext ctx, Collector<Row> out) throws Exception {
        if (rules == null) {
            Map<String, String> overrides = new HashMap<>();
            for (Map.Entry<String, String> e : ctx.getBroadcastState(ruleOverrides()).immutableEntries()) {
                overrides.put(e.getKey(), e.getValue());
            }
            rules = defaults.withOverrides(overrides);
        }
        CardFeatures.CardState state = card.value();
        if (state == null) {
            state = new CardFeatures.CardState();
        }
        int at = passedFields.length;
        Row row = Row.withPositions(value.getKind(), at + CardFeatures.FEATURES + EXTRA_FIELDS);
        if (features.compute(state, value, row, at)) {
            card.update(state);
        }
        String severity = rules.firstSeverity(((Number) value.getField(amountField)).doubleValue(),
                (String) value.getField(deviceField), (Integer) row.getField(at), (Double) row.getField(at + 1),
                (Double) row.getField(at + 2), (Double) row.getField(at + 3), (Integer) row.getField(at + 4),
                (Integer) row.getField(at + 6), (Double) row.getField(at + 7), (Double) row.getField(at + 8),
                (Integer) row.getField(at + 9), (Integer) row.getField(at + 10));
        if (severity == null) {
            return;
        }
        for (int i = 0; i < at; i++) {
            row.setField(i, value.getField(passedFields[i]));
        }
        String visited = (String) row.getField(at + 11);
        Long visitedMs = (Long) row.getField(at + 12);
        long t = ((Number) value.getField(timeField)).longValue();
        String suspect = visited != null && visitedMs != null && t - visitedMs <= terminalWindowMs ? visited : null;
        int extra = at + CardFeatures.FEATURES;
        row.setField(extra, suspect);
        row.setField(extra + 1, severity);
        row.setField(extra + 2, suspect != null ? "terminal:" + suspect : "card:" + value.getField(cardField));
        out.collect(row);
    }
}
