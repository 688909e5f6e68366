package io.rtfd.flink;

import java.io.Serializable;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Rule pass 1 in the JVM: the severity the rules give a transaction from its card features alone (no terminal
 * context), as flink/rules/engine.py first_pass computes it; null when no rule fires.
 *
 * <p>The rule set is defaults.json merged with the overrides of the {@code fraud-rules} topic, validated as
 * flink/rules/config.py apply_override does: an override that Python would refuse is refused here too (and
 * the previous one stays), so both passes run the same rules. Only what pass 1 needs is kept: each rule's
 * enabled flag, severity and numeric params. Immutable: {@link #with} returns a new set.
 * tests/flink/test_card_anomalies.py holds the two to the same verdicts.
 */
public final class FirstPassRules implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Logger LOG = LoggerFactory.getLogger(FirstPassRules.class);

    /** Severities by rank, and the weight each adds to the score (engine.py WEIGHT). */
    static final List<String> SEVERITIES = List.of("LOW", "MEDIUM", "HIGH", "CRITICAL");
    private static final double[] WEIGHTS = {0.3, 0.5, 0.8, 0.95};
    private static final Set<String> FIELDS =
            Set.of("id", "version", "enabled", "severity", "params", "reason", "summary");
    /** engine.py MIN_LOG_STD: a card with near-constant amounts must not turn every small deviation into z=50. */
    private static final double MIN_LOG_STD = 0.25;

    /** One rule as pass 1 needs it. */
    static final class Rule implements Serializable {
        private static final long serialVersionUID = 1L;
        final boolean enabled;
        final int severity;  // index into SEVERITIES
        final Map<String, Double> params;

        Rule(boolean enabled, int severity, Map<String, Double> params) {
            this.enabled = enabled;
            this.severity = severity;
            this.params = Collections.unmodifiableMap(params);
        }

        double p(String name) {
            Double value = params.get(name);
            if (value == null) {
                throw new IllegalStateException("rule param " + name + " missing from defaults.json");
            }
            return value;
        }
    }

    private final Map<String, Rule> defaults;
    private final Map<String, Rule> rules;

    private FirstPassRules(Map<String, Rule> defaults, Map<String, Rule> rules) {
        this.defaults = defaults;
        this.rules = rules;
    }

    /** The rule set of defaults.json (its text), no overrides. */
    public static FirstPassRules fromDefaults(String defaultsJson) {
        Map<String, Rule> defaults = new LinkedHashMap<>();
        try {
            Iterator<Map.Entry<String, JsonNode>> it = JSON.readTree(defaultsJson).fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                JsonNode spec = e.getValue();
                Map<String, Double> params = new LinkedHashMap<>();
                spec.path("params").fields().forEachRemaining(p -> params.put(p.getKey(), p.getValue().asDouble()));
                defaults.put(e.getKey(), new Rule(spec.path("enabled").asBoolean(),
                        SEVERITIES.indexOf(spec.path("severity").asText()), params));
            }
        } catch (JsonProcessingException exc) {
            throw new IllegalArgumentException("defaults.json is not JSON: " + exc.getOriginalMessage(), exc);
        }
        return new FirstPassRules(Collections.unmodifiableMap(defaults), Collections.unmodifiableMap(defaults));
    }

    /**
     * This rule set with every override applied over the defaults (rule id -> the topic record's JSON text);
     * an override for a rule id without code, or one these defaults refuse (kept in state from before an
     * upgrade), is ignored and logged, as Python's merge does.
     */
    public FirstPassRules withOverrides(Map<String, String> overrides) {
        Map<String, Rule> merged = new LinkedHashMap<>(defaults);
        for (Map.Entry<String, String> e : overrides.entrySet()) {
            Rule base = defaults.get(e.getKey());
            if (base == null) {
                continue;
            }
            try {
                merged.put(e.getKey(), override(e.getKey(), base, e.getValue()));
            } catch (IllegalArgumentException exc) {
                LOG.error("ignoring invalid config: {}", exc.getMessage());
            }
        }
        return new FirstPassRules(defaults, Collections.unmodifiableMap(merged));
    }

    /**
     * Whether a topic record's value is an override to keep: null when it is; else why it is refused. A value
     * that is not a JSON object is refused like Python's parse_record skips it.
     */
    public String refusal(String ruleId, String overrideJson) {
        Rule base = defaults.get(ruleId);
        try {
            JsonNode node = JSON.readTree(overrideJson);
            if (node == null || !node.isObject()) {
                return ruleId + ": rule config must be a JSON object";
            }
            if (base != null) {
                override(ruleId, base, overrideJson);
            }
            return null;
        } catch (JsonProcessingException exc) {
            return ruleId + ": rule config is not JSON (" + exc.getOriginalMessage() + ")";
        } catch (IllegalArgumentException exc) {
            return exc.getMessage();
        }
    }

    private static Rule override(String ruleId, Rule base, String overrideJson) {
        JsonNode node;
        try {
            node = JSON.readTree(overrideJson);
        } catch (JsonProcessingException exc) {
            throw new IllegalArgumentException(ruleId + ": rule config is not JSON", exc);
        }
        if (node == null || !node.isObject()) {
            throw new IllegalArgumentException(ruleId + ": rule config must be a JSON object");
        }
        node.fieldNames().forEachRemaining(name -> {
            if (!FIELDS.contains(name)) {
                throw new IllegalArgumentException(ruleId + ": unknown field " + name);
            }
        });
        int severity = base.severity;
        if (node.has("severity")) {
            JsonNode s = node.get("severity");
            severity = s.isTextual() ? SEVERITIES.indexOf(s.asText()) : -1;
            if (severity < 0) {
                throw new IllegalArgumentException(ruleId + ": severity must be one of LOW/MEDIUM/HIGH/CRITICAL (got "
                        + s + ")");
            }
        }
        Map<String, Double> params = new LinkedHashMap<>(base.params);
        JsonNode given = node.path("params");
        if (!given.isMissingNode() && !given.isNull()) {
            if (!given.isObject()) {
                throw new IllegalArgumentException(ruleId + ": params must be a JSON object");
            }
            Iterator<Map.Entry<String, JsonNode>> it = given.fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> p = it.next();
                if (!params.containsKey(p.getKey())) {
                    throw new IllegalArgumentException(ruleId + ": unknown param " + p.getKey());
                }
                params.put(p.getKey(), number(ruleId, p.getKey(), p.getValue()));
            }
        }
        boolean enabled = base.enabled;
        if (node.has("enabled")) {
            if (!node.get("enabled").isBoolean()) {
                throw new IllegalArgumentException(ruleId + ": enabled must be true or false (got "
                        + node.get("enabled") + ")");
            }
            enabled = node.get("enabled").asBoolean();
        }
        if (node.has("version")) {
            JsonNode v = node.get("version");
            boolean integral = v.isNumber() || v.isBoolean() || (v.isTextual() && v.asText().trim().matches("[+-]?\\d+"));
            if (!integral) {
                throw new IllegalArgumentException(ruleId + ": version must be an integer (got " + v + ")");
            }
        }
        return new Rule(enabled, severity, params);
    }

    /** A param value as Python's coerce takes it for a numeric default: a number, a numeric text or a bool. */
    private static double number(String ruleId, String key, JsonNode value) {
        if (value.isNumber()) {
            return value.asDouble();
        }
        if (value.isBoolean()) {
            return value.asBoolean() ? 1.0 : 0.0;
        }
        if (value.isTextual()) {
            try {
                return Double.parseDouble(value.asText().trim());
            } catch (NumberFormatException ignored) {
                // fall through
            }
        }
        throw new IllegalArgumentException(ruleId + ": param " + key + " must be a number (got " + value + ")");
    }

    /**
     * Rule pass 1 over one transaction's features (engine.py first_pass: suspect_cards unknown); each argument
     * null where the feature is. Returns the severity of the merged score, or null when no rule fired.
     */
    public String firstSeverity(double amountEur, String deviceId, Integer histN, Double histSumLog,
                                Double histSumSqLog, Double histSpanS, Integer cnt10m, Integer tiny30m,
                                Double distanceKm, Double gapS, Integer deviceUses, Integer deviceHist) {
        double n = histN == null ? 0.0 : histN;
        double mean = (histSumLog == null ? 0.0 : histSumLog) / Math.max(n, 1.0);
        double var = (histSumSqLog == null ? 0.0 : histSumSqLog) / Math.max(n, 1.0) - mean * mean;
        double std = Math.sqrt(Math.max(var, MIN_LOG_STD * MIN_LOG_STD));
        double ratio = n > 0 ? amountEur / Math.exp(mean) : Double.NaN;
        double z = n > 0 ? (Math.log(Math.max(amountEur, 1e-6)) - mean) / std : Double.NaN;
        double distance = distanceKm == null ? Double.NaN : distanceKm;
        double gap = gapS == null ? Double.NaN : gapS;
        double speedKmh = distance / (Math.max(gap, 1.0) / 3600.0);  // NaN propagates as numpy's maximum does
        double miss = 1.0;
        boolean fired = false;
        for (Map.Entry<String, Rule> e : rules.entrySet()) {
            Rule rule = e.getValue();
            if (!rule.enabled) {
                continue;
            }
            boolean hit;
            switch (e.getKey()) {
                case "velocity":
                    hit = velocity(rule, n, cnt10m == null ? 0.0 : cnt10m, histSpanS == null ? 0.0 : histSpanS);
                    break;
                case "amount_anomaly":
                    hit = n >= rule.p("min_history") && z >= rule.p("min_z") && ratio >= rule.p("min_ratio")
                            && amountEur >= rule.p("min_amount_eur");
                    break;
                case "card_testing":
                    hit = (tiny30m == null ? 0.0 : tiny30m) >= rule.p("min_tiny") && amountEur >= rule.p("large_eur");
                    break;
                case "impossible_travel":
                    hit = distance >= rule.p("min_km") && speedKmh > rule.p("max_kmh");
                    break;
                case "account_takeover":
                    hit = deviceId != null && deviceUses != null && deviceUses == 1
                            && (deviceHist == null ? 0.0 : deviceHist) >= rule.p("min_device_history")
                            && n >= rule.p("min_history") && ratio >= rule.p("min_ratio");
                    break;
                case "compromised_terminal":  // no terminal context in pass 1: suspect_cards counts as 0
                    hit = 0.0 >= rule.p("min_cards");
                    break;
                default:  // a rule without code here
                    hit = false;
            }
            if (hit) {
                fired = true;
                miss *= 1.0 - WEIGHTS[rule.severity];
            }
        }
        if (!fired) {
            return null;
        }
        // Python's round(score, 4): half-even on the double's exact value
        double score = new BigDecimal(1.0 - miss).setScale(4, RoundingMode.HALF_EVEN).doubleValue();
        if (score >= 0.95) {
            return "CRITICAL";
        }
        if (score >= 0.8) {
            return "HIGH";
        }
        return score >= 0.5 ? "MEDIUM" : "LOW";
    }

    /**
     * Poisson test of the 10-minute count against the card's own rate before the window; without a known
     * baseline only an absolute count fires (engine.py velocity).
     */
    private static boolean velocity(Rule rule, double n, double cnt, double span) {
        double beforeN = n - (cnt - 1);
        double beforeS = span - 600.0;
        boolean known = beforeN >= rule.p("min_history") && beforeS >= rule.p("min_baseline_min") * 60.0;
        if (!known) {
            return cnt >= rule.p("min_count_without_history");
        }
        if (!(cnt >= rule.p("min_count"))) {
            return false;
        }
        double expected = beforeN / Math.max(beforeS, 1.0) * 60.0 * 10.0;
        return poissonSf((long) cnt, expected) < rule.p("max_poisson_p");
    }

    /** P(X >= k) for X ~ Poisson(lam) (engine.py poisson_sf). */
    static double poissonSf(long k, double lam) {
        k = Math.max(k, 0);
        lam = Math.max(lam, 1e-9);
        if (k == 0) {
            return 1.0;
        }
        double logLam = Math.log(lam);
        double sum = 0.0;
        double logFactorial = 0.0;  // log(i!)
        for (long i = 0; i < k; i++) {
            if (i > 0) {
                logFactorial += Math.log(i);
            }
            sum += Math.exp(-lam + i * logLam - logFactorial);
        }
        return Math.min(Math.max(1.0 - sum, 0.0), 1.0);
    }
}
