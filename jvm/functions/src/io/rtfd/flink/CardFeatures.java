package io.rtfd.flink;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The per-card features of every transaction, from the card's history in Flink keyed state (checkpointed with
 * the job).
 *
 * <p>Input: transactions keyed by card token. Output: each input row followed by the 13 fields of
 * flink.features.CARD_FEATURES, in that order: hist_n (Integer), hist_sum_log, hist_sumsq_log, hist_span_s
 * (Double), cnt_10m (Integer), sum_eur_10m (Double), tiny_30m (Integer), distance_km, gap_s (Double, null
 * without a position here or before), device_uses, device_hist (Integer), prev_pos_terminal (String, null) and
 * prev_pos_ms (Long, null). Each transaction is evaluated on arrival against the entries earlier in event time
 * (after those at the same time), then remembered; nothing waits for a watermark, a late transaction counts like
 * any other. A transaction id already among the entries is a replay: it gets the features of the entries
 * before it, without itself, and is not remembered again.
 *
 * <p>The same logic, bounds and arithmetic order (so the doubles agree) as flink/features.py CardHistory, which
 * unit tests and the rule tuning run; tests/flink/test_card_features.py holds the two to the same features,
 * transaction by transaction. State, one {@link CardState} per card: its last {@link #HISTORY_ROWS} entries and
 * at least every one within {@link #TINY_WINDOW_MS} of the newest, the newest evicted position and card-present
 * terminal (travel and terminal features reach back indefinitely), and the card's use count per device. It
 * expires after {@code ttlDays} without a new transaction.
 */
public class CardFeatures extends KeyedProcessFunction<Object, Row, Row> {
    private static final long serialVersionUID = 1L;

    /** The amount profile: the card's last 50 transactions before this one. */
    public static final int HISTORY_ROWS = 50;
    /** Card testing: tiny charges in the 30 minutes before. */
    public static final long TINY_WINDOW_MS = 30 * 60_000L;
    /** Velocity: count and spend in the 10 minutes up to this one. */
    public static final long VELOCITY_WINDOW_MS = 10 * 60_000L;
    /** How many fields each row gains. */
    public static final int FEATURES = 13;
    /** The state's type: POJOs, a list and a map, all with Flink's own serializers (no Kryo). */
    public static final TypeInformation<CardState> STATE_TYPE = TypeInformation.of(CardState.class);

    private final int txField;
    private final int timeField;
    private final int amountField;
    private final int deviceField;
    private final int latField;
    private final int lonField;
    private final int channelField;
    private final int terminalField;
    private final double tinyEur;
    private final int ttlDays;
    private transient ValueState<CardState> card;

    public CardFeatures(int txField, int timeField, int amountField, int deviceField, int latField, int lonField,
                        int channelField, int terminalField, double tinyEur, int ttlDays) {
        this.txField = txField;
        this.timeField = timeField;
        this.amountField = amountField;
        this.deviceField = deviceField;
        this.latField = latField;
        this.lonField = lonField;
        this.channelField = channelField;
        this.terminalField = terminalField;
        this.tinyEur = tinyEur;
        this.ttlDays = ttlDays;
    }

    /** One past transaction of the card, as much as the features need (flink.features.Entry). */
    public static class Entry {
        /** Event time, ms. */
        public long t;
        /** Transaction id: a transaction replayed after a failure is not remembered twice. */
        public String tx;
        public double amountEur;
        /** Below tinyEur when it was remembered. */
        public boolean tiny;
        /** It carried a device id. */
        public boolean device;
        /** Its position: both null or neither. */
        public Double lat;
        public Double lon;
        /** Card-present terminal (channel POS), else null. */
        public String posTerminal;
        /** log(amountEur) for the amount profile, null unless amountEur > 0. */
        public Double logAmount;

        public Entry() {
        }
    }

    /** A card's state (flink.features.CardHistory). */
    public static class CardState {
        /** The recent transactions in event-time order, peers in arrival order. */
        public List<Entry> entries = new ArrayList<>();
        /** Lifetime use count per device id (transactions without one: {@link #noDeviceUses}). */
        public Map<String, Integer> devices = new HashMap<>();
        /** Lifetime count of the transactions without a device id (Python's key None). */
        public int noDeviceUses;
        /** The newest evicted geo-located entry: event time (null: none yet), lat, lon. */
        public Long lastGeoT;
        public double lastGeoLat;
        public double lastGeoLon;
        /** The newest evicted card-present entry: event time (null: none yet) and terminal. */
        public Long lastPosT;
        public String lastPosTerminal;

        public CardState() {
        }
    }

    /** The card's history in keyed state, gone {@code ttlDays} after the card's last new transaction. */
    static ValueStateDescriptor<CardState> historyState(int ttlDays) {
        ValueStateDescriptor<CardState> descriptor = new ValueStateDescriptor<>("card_history", STATE_TYPE);
        descriptor.enableTimeToLive(StateExpiry.afterDaysWithoutWrite(ttlDays));
        return descriptor;
    }

    @Override
    public void open(OpenContext openContext) {
        card = getRuntimeContext().getState(historyState(ttlDays));
    }

    @Override
    public void processElement(Row value, Context ctx, Collector<Row> out) throws Exception {
        CardState state = card.value();
        if (state == null) {
            state = new CardState();
        }
        int arity = value.getArity();
        Row result = Row.withPositions(value.getKind(), arity + FEATURES);
        for (int i = 0; i < arity; i++) {
            result.setField(i, value.getField(i));
        }
        if (compute(state, value, result, arity)) {
            card.update(state);
        }
        out.collect(result);
    }

    /**
     * The {@link #FEATURES} fields of transaction {@code value} from the card's {@code state}, written into
     * {@code result} from position {@code at} on; then the transaction is remembered in {@code state}. Returns
     * false when it was remembered already (a replay): {@code state} is unchanged.
     */
    public boolean compute(CardState state, Row value, Row result, int at) {
        String tx = (String) value.getField(txField);
        long t = ((Number) value.getField(timeField)).longValue();
        double amount = ((Number) value.getField(amountField)).doubleValue();
        String device = (String) value.getField(deviceField);
        Double lat = (Double) value.getField(latField);
        Double lon = (Double) value.getField(lonField);
        List<Entry> entries = state.entries;
        int insertAt = after(entries, t);
        boolean known = false;
        for (Entry e : entries) {
            if (e.tx.equals(tx)) {
                known = true;
                break;
            }
        }
        List<Entry> before = new ArrayList<>(insertAt);
        for (int i = 0; i < insertAt; i++) {
            if (!known || !entries.get(i).tx.equals(tx)) {
                before.add(entries.get(i));
            }
        }
        int first = Math.max(0, before.size() - HISTORY_ROWS);
        int histN = before.size() - first;
        double sumLog = 0.0;
        double sumSqLog = 0.0;
        int deviceHist = 0;
        for (int i = first; i < before.size(); i++) {
            Entry e = before.get(i);
            if (e.logAmount != null) {
                sumLog += e.logAmount;
                sumSqLog += e.logAmount * e.logAmount;
            }
            if (e.device) {
                deviceHist++;
            }
        }
        int cnt10 = 1;
        double sum10 = 0.0;
        int tiny30 = 0;
        for (Entry e : before) {
            if (e.t >= t - VELOCITY_WINDOW_MS) {
                cnt10++;
                sum10 += e.amountEur;
            }
            if (e.tiny && e.t >= t - TINY_WINDOW_MS) {
                tiny30++;
            }
        }
        if (!known) {
            if (device == null) {
                state.noDeviceUses++;
            } else {
                state.devices.merge(device, 1, Integer::sum);
            }
        }
        Integer uses = device == null ? (state.noDeviceUses > 0 ? state.noDeviceUses : null)
                : state.devices.get(device);
        Entry geo = null;
        Entry pos = null;
        for (int i = before.size() - 1; i >= 0 && (geo == null || pos == null); i--) {
            Entry e = before.get(i);
            if (geo == null && e.lat != null) {
                geo = e;
            }
            if (pos == null && e.posTerminal != null) {
                pos = e;
            }
        }
        boolean hasGeo;
        long geoT = 0;
        double geoLat = 0.0;
        double geoLon = 0.0;
        if (geo != null) {
            hasGeo = true;
            geoT = geo.t;
            geoLat = geo.lat;
            geoLon = geo.lon;
        } else {
            hasGeo = state.lastGeoT != null && state.lastGeoT <= t;
            if (hasGeo) {
                geoT = state.lastGeoT;
                geoLat = state.lastGeoLat;
                geoLon = state.lastGeoLon;
            }
        }
        Long posMs = null;
        String posTerminal = null;
        if (pos != null) {
            posMs = pos.t;
            posTerminal = pos.posTerminal;
        } else if (state.lastPosT != null && state.lastPosT <= t) {
            posMs = state.lastPosT;
            posTerminal = state.lastPosTerminal;
        }
        boolean here = lat != null && lon != null;

        result.setField(at, histN);
        result.setField(at + 1, sumLog);
        result.setField(at + 2, sumSqLog);
        result.setField(at + 3, histN > 0 ? (t - before.get(first).t) / 1000.0 : 0.0);
        result.setField(at + 4, cnt10);
        result.setField(at + 5, sum10 + amount);
        result.setField(at + 6, tiny30);
        result.setField(at + 7, here && hasGeo ? distanceKm(geoLat, geoLon, lat, lon) : null);
        result.setField(at + 8, here && hasGeo ? (t - geoT) / 1000.0 : null);
        result.setField(at + 9, uses != null ? uses : 1);
        result.setField(at + 10, deviceHist);
        result.setField(at + 11, posTerminal);
        result.setField(at + 12, posMs);

        if (!known) {
            String channel = (String) value.getField(channelField);
            String terminal = (String) value.getField(terminalField);
            Entry entry = new Entry();
            entry.t = t;
            entry.tx = tx;
            entry.amountEur = amount;
            entry.tiny = amount < tinyEur;
            entry.device = device != null;
            entry.lat = here ? lat : null;
            entry.lon = here ? lon : null;
            entry.posTerminal = "POS".equals(channel) && terminal != null ? terminal : null;
            entry.logAmount = amount > 0 ? Math.log(amount) : null;
            entries.add(insertAt, entry);
            evict(state);
        }
        return !known;
    }

    /** Where an entry at time {@code t} goes: after every entry at or before it (Python's bisect_right). */
    private static int after(List<Entry> entries, long t) {
        int lo = 0;
        int hi = entries.size();
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (t < entries.get(mid).t) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return lo;
    }

    /** Drop the oldest entries beyond HISTORY_ROWS that are older than TINY_WINDOW_MS before the newest; the
     * last geo-located / card-present ones dropped become lastGeo / lastPos. */
    private static void evict(CardState state) {
        List<Entry> entries = state.entries;
        long horizon = entries.get(entries.size() - 1).t - TINY_WINDOW_MS;
        int drop = 0;
        while (entries.size() - drop > HISTORY_ROWS && entries.get(drop).t < horizon) {
            drop++;
        }
        for (int i = 0; i < drop; i++) {  // oldest first: the last one seen is the newest evicted
            Entry e = entries.get(i);
            if (e.lat != null) {
                state.lastGeoT = e.t;
                state.lastGeoLat = e.lat;
                state.lastGeoLon = e.lon;
            }
            if (e.posTerminal != null) {
                state.lastPosT = e.t;
                state.lastPosTerminal = e.posTerminal;
            }
        }
        entries.subList(0, drop).clear();
    }

    /** Great-circle distance in km (haversine), as services/producer/world.py distance_km computes it. */
    static double distanceKm(double aLat, double aLon, double bLat, double bLon) {
        double p1 = Math.toRadians(aLat);
        double p2 = Math.toRadians(bLat);
        double dp = p2 - p1;
        double dl = Math.toRadians(bLon - aLon);
        double sinDp = Math.sin(dp / 2);
        double sinDl = Math.sin(dl / 2);
        double h = sinDp * sinDp + Math.cos(p1) * Math.cos(p2) * (sinDl * sinDl);
        return 2 * 6371.0 * Math.asin(Math.sqrt(h < 1.0 ? h : 1.0));  // Python's min(1.0, h), NaN included
    }
}
