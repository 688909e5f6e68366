package io.rtfd.flink;

import java.io.EOFException;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

// Avro and Jackson as shaded into flink-sql-avro-confluent-registry (the format jar the job already loads, at
// the installed Flink's version): no second copy of either on the job's class path.
import org.apache.flink.avro.shaded.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.avro.shaded.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.avro.shaded.org.apache.avro.Schema;
import org.apache.flink.avro.shaded.org.apache.avro.SchemaNormalization;
import org.apache.flink.avro.shaded.org.apache.avro.generic.GenericDatumReader;
import org.apache.flink.avro.shaded.org.apache.avro.generic.GenericRecord;
import org.apache.flink.avro.shaded.org.apache.avro.io.BinaryDecoder;
import org.apache.flink.avro.shaded.org.apache.avro.io.DecoderFactory;
import org.apache.flink.avro.shaded.org.apache.avro.util.Utf8;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * decode_transaction(value BYTES) -> ROW: a Confluent-framed Avro transaction decoded and validated in the JVM.
 *
 * <p>Bytes: magic byte 0, the writer schema id as 4 big-endian bytes, then the Avro binary body. Writer schemas
 * come from the registry by id (cached; an unknown id is remembered for {@code UNKNOWN_TTL_MS}) and are
 * resolved against the newest transaction schema, so v1 and v2 writers decode to one row. Every problem becomes
 * the row's {@code error} naming it, with the fields null; the job sends those rows to the dead-letter topic and
 * never fails on bad input. A registry that does not answer is retried and then fails the task (Flink restarts
 * it): an outage must stall the job, not dead-letter good data.
 *
 * <p>The same contract, reasons and validation as flink/decode.py (Decoder, the reference the tests hold this
 * class to, record by record, tests/flink/test_decode.py) and services/transactions.py (the producers' rules).
 * The reference data comes from Python through the constructor (schemas, pycountry's codes, channels, limits),
 * so the two cannot drift apart. Validation messages format numbers as Python's {@code {:g}} and strings as
 * its {@code repr} for ASCII text.
 */
public class DecodeTransaction extends ScalarFunction {
    private static final long serialVersionUID = 1L;
    private static final long UNKNOWN_TTL_MS = 30_000;
    private static final int LOOKUP_ATTEMPTS = 6;
    private static final int HEADER = 5;
    private static final Pattern MAYBE_PAN = Pattern.compile("[\\d\\s-]{13,25}", Pattern.UNICODE_CHARACTER_CLASS);
    private static final Pattern PAN_SEPARATORS = Pattern.compile("[\\s-]", Pattern.UNICODE_CHARACTER_CLASS);
    private static final Pattern MCC = Pattern.compile("\\d{4}", Pattern.UNICODE_CHARACTER_CLASS);
    static final String[] COLUMNS = {
        "transaction_id", "event_time_ms", "bank_id", "customer_id", "card_token", "merchant_id", "terminal_id",
        "mcc", "amount_minor", "currency", "channel", "country", "lat", "lon", "device_id", "schema_version",
        "error",
    };
    private static final int EVENT_TIME = 1, MCC_FIELD = 7, AMOUNT = 8, CURRENCY = 9, CHANNEL = 10, COUNTRY = 11,
            LAT = 12, LON = 13, VERSION = 15, ERROR = 16;
    private static final int[] STRINGS = {0, 2, 3, 4, 5, 6, MCC_FIELD, CURRENCY, CHANNEL, COUNTRY, 14};
    private static final String ROW_TYPE = "ROW<transaction_id STRING, event_time_ms BIGINT, bank_id STRING, "
            + "customer_id STRING, card_token STRING, merchant_id STRING, terminal_id STRING, mcc STRING, "
            + "amount_minor BIGINT, currency STRING, channel STRING, country STRING, lat DOUBLE, lon DOUBLE, "
            + "device_id STRING, schema_version INT, error STRING>";

    private final String registryUrl;
    private final ArrayList<String> versionSchemas;  // index i: the contract's version i + 1; the last one reads
    private final ArrayList<String> idFields;
    private final HashSet<String> currencies;
    private final HashSet<String> countries;
    private final ArrayList<String> channels;
    private final long minEventMs;
    private final long maxEventMs;

    private transient int[] idIndexes;
    private transient Schema reader;
    private transient Map<String, Integer> knownVersions;  // parsing canonical form -> contract version
    private transient Map<Integer, Object> writers;  // schema id -> Writer | error text
    private transient Map<Integer, Long> unknown;  // schema id -> when the registry last said it does not know it
    private transient HttpClient http;
    private transient ObjectMapper json;

    public DecodeTransaction(String registryUrl, List<String> versionSchemas, List<String> idFields,
                             List<String> currencies, List<String> countries, List<String> channels,
                             long minEventMs, long maxEventMs) {
        this.registryUrl = registryUrl.replaceAll("/+$", "");
        this.versionSchemas = new ArrayList<>(versionSchemas);
        this.idFields = new ArrayList<>(idFields);
        this.currencies = new HashSet<>(currencies);
        this.countries = new HashSet<>(countries);
        this.channels = new ArrayList<>(channels);
        this.minEventMs = minEventMs;
        this.maxEventMs = maxEventMs;
    }

    /** A writer schema the registry holds, ready to read records into the reader schema. */
    private static final class Writer {
        final GenericDatumReader<GenericRecord> datumReader;
        final int version;

        Writer(Schema writer, Schema reader, int version) {
            this.datumReader = new GenericDatumReader<>(writer, reader);
            this.version = version;
        }
    }

    private void init() {
        knownVersions = new HashMap<>();
        for (int i = 0; i < versionSchemas.size(); i++) {
            Schema schema = new Schema.Parser().parse(versionSchemas.get(i));
            knownVersions.put(SchemaNormalization.toParsingForm(schema), i + 1);
            reader = schema;
        }
        idIndexes = idFields.stream().mapToInt(name -> List.of(COLUMNS).indexOf(name)).toArray();
        writers = new HashMap<>();
        unknown = new HashMap<>();
        http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        json = new ObjectMapper();
    }

    @DataTypeHint(ROW_TYPE)
    public Row eval(byte[] value) {
        if (reader == null) {
            init();
        }
        if (value == null) {
            return failed(0, "empty value (null)");
        }
        if (value.length < HEADER) {
            return failed(0, "truncated: " + value.length + " bytes, shorter than the 5-byte Confluent header");
        }
        if (value[0] != 0) {
            return failed(0, "wrong magic byte " + (value[0] & 0xff) + " (expected 0: not Confluent wire format)");
        }
        long schemaId = ByteBuffer.wrap(value, 1, 4).getInt() & 0xffffffffL;
        Object writer = writer(schemaId);
        if (writer instanceof String) {
            return failed(0, (String) writer);
        }
        Writer w = (Writer) writer;
        BinaryDecoder body = DecoderFactory.get().binaryDecoder(value, HEADER, value.length - HEADER, null);
        GenericRecord record;
        int trailing;
        try {
            record = w.datumReader.read(null, body);
            trailing = body.inputStream().available();
        } catch (EOFException e) {
            return failed(w.version, "truncated or garbage Avro body for schema id " + schemaId);
        } catch (Exception e) {  // schema resolution, a bad enum or union index, a negative length, ...
            return failed(w.version, "cannot decode as transaction with schema id " + schemaId + ": "
                    + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        if (trailing > 0) {
            return failed(w.version, "garbage: " + trailing + " trailing bytes after the Avro record");
        }
        Object[] row = new Object[COLUMNS.length];
        try {
            for (int i : STRINGS) {
                row[i] = text(record.get(COLUMNS[i]));
            }
        } catch (CharacterCodingException e) {
            return failed(w.version, "cannot decode as transaction with schema id " + schemaId
                    + ": UnicodeDecodeError: invalid UTF-8 in a string field");
        }
        row[CURRENCY] = code((String) row[CURRENCY]);
        row[COUNTRY] = code((String) row[COUNTRY]);
        row[EVENT_TIME] = record.get("event_time");
        row[AMOUNT] = record.get("amount_minor");
        row[LAT] = number(record.get("lat"));
        row[LON] = number(record.get("lon"));
        row[VERSION] = w.version;
        List<String> problems = validate(row);
        row[ERROR] = problems.isEmpty() ? null : String.join("; ", problems);
        return Row.of(row);
    }

    private static Row failed(int version, String error) {
        Row row = new Row(COLUMNS.length);
        row.setField(VERSION, version);
        row.setField(ERROR, error);
        return row;
    }

    private static String text(Object value) throws CharacterCodingException {
        if (value == null) {
            return null;
        }
        if (value instanceof Utf8) {  // strict, as Python decodes: invalid UTF-8 is an error, not U+FFFD
            Utf8 utf8 = (Utf8) value;
            return StandardCharsets.UTF_8.newDecoder()
                    .decode(ByteBuffer.wrap(utf8.getBytes(), 0, utf8.getByteLength())).toString();
        }
        return value.toString();  // enum symbols
    }

    private static String code(String value) {
        return value == null ? null : pythonStrip(value).toUpperCase(Locale.ROOT);
    }

    private static Double number(Object value) {
        if (value == null) {
            return null;
        }
        double d = ((Number) value).doubleValue();
        return Double.isNaN(d) ? null : d;  // as pandas: NaN is a missing value
    }

    /** The services.transactions rules (decode.py validate), '; '-joined in the same order. */
    private List<String> validate(Object[] row) {
        List<String> problems = new ArrayList<>();
        for (int i : idIndexes) {
            String name = COLUMNS[i];
            String value = (String) row[i];
            if (value == null || pythonStrip(value).isEmpty()) {
                problems.add(name + ": required, must be non-empty");
            }
            if (value != null && MAYBE_PAN.matcher(value).matches() && looksLikePan(value)) {
                problems.add(name + ": looks like a card number; must carry card tokens, never PANs");
            }
        }
        Long t = (Long) row[EVENT_TIME];
        if (t != null && (t < minEventMs || t >= maxEventMs)) {
            problems.add("event_time: out of range 2000..2100 (got " + t + " ms)");
        }
        Long amount = (Long) row[AMOUNT];
        if (amount != null && amount <= 0) {
            problems.add("amount_minor: must be > 0 (got " + amount + ")");
        }
        String currency = (String) row[CURRENCY];
        if (currency != null && !currencies.contains(currency)) {
            problems.add("currency: must be ISO 4217 currency code (got " + pythonRepr(currency) + ")");
        }
        String country = (String) row[COUNTRY];
        if (country != null && !countries.contains(country)) {
            problems.add("country: must be ISO 3166-1 alpha-2 country code (got " + pythonRepr(country) + ")");
        }
        String channel = (String) row[CHANNEL];
        if (channel != null && !channels.contains(channel)) {
            problems.add("channel: must be one of " + String.join("/", channels) + " (got " + pythonRepr(channel)
                    + ")");
        }
        String mcc = (String) row[MCC_FIELD];
        if (mcc != null && !MCC.matcher(mcc).matches()) {
            problems.add("mcc: must be four digits (got " + pythonRepr(mcc) + ")");
        }
        Double lat = (Double) row[LAT];
        Double lon = (Double) row[LON];
        if (lat != null && !(lat >= -90.0 && lat <= 90.0)) {
            problems.add("lat: must be in [-90, 90] (got " + pythonG(lat) + ")");
        }
        if (lon != null && !(lon >= -180.0 && lon <= 180.0)) {
            problems.add("lon: must be in [-180, 180] (got " + pythonG(lon) + ")");
        }
        if ((lat == null) != (lon == null)) {
            problems.add("lat/lon: must be both null or both set");
        }
        return problems;
    }

    /** services.transactions.looks_like_pan: 13-19 digits once spaces and dashes are gone, Luhn-valid. */
    static boolean looksLikePan(String value) {
        String digits = PAN_SEPARATORS.matcher(value).replaceAll("");
        int n = digits.codePointCount(0, digits.length());
        if (n < 13 || n > 19) {
            return false;
        }
        int[] points = digits.codePoints().toArray();
        int total = 0;
        for (int i = 0; i < points.length; i++) {
            int d = Character.digit(points[points.length - 1 - i], 10);
            if (d < 0) {
                return false;
            }
            if (i % 2 == 1) {
                d = d > 4 ? d * 2 - 9 : d * 2;
            }
            total += d;
        }
        return total % 10 == 0;
    }

    private static boolean pythonSpace(int c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == 0x85;
    }

    static String pythonStrip(String s) {
        int start = 0;
        int end = s.length();
        while (start < end && pythonSpace(s.charAt(start))) {
            start++;
        }
        while (end > start && pythonSpace(s.charAt(end - 1))) {
            end--;
        }
        return s.substring(start, end);
    }

    /** Python's repr of a str, for printable ASCII and common escapes (other characters as they are). */
    static String pythonRepr(String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder out = new StringBuilder().append(quote);
        for (char c : s.toCharArray()) {
            if (c == quote || c == '\\') {
                out.append('\\').append(c);
            } else if (c == '\n') {
                out.append("\\n");
            } else if (c == '\r') {
                out.append("\\r");
            } else if (c == '\t') {
                out.append("\\t");
            } else if (c < 0x20 || c == 0x7f) {
                out.append(String.format("\\x%02x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append(quote).toString();
    }

    /** Python's format(x, 'g'): 6 significant digits, fixed for exponents -4..5, else d.ddddde+XX. */
    static String pythonG(double x) {
        if (Double.isNaN(x)) {
            return "nan";
        }
        if (Double.isInfinite(x)) {
            return x > 0 ? "inf" : "-inf";
        }
        if (x == 0) {
            return 1 / x < 0 ? "-0" : "0";
        }
        BigDecimal rounded = new BigDecimal(x).round(new MathContext(6, RoundingMode.HALF_EVEN));
        int exponent = rounded.precision() - rounded.scale() - 1;
        if (exponent >= -4 && exponent < 6) {
            return rounded.stripTrailingZeros().toPlainString();
        }
        String mantissa = rounded.movePointLeft(exponent).stripTrailingZeros().toPlainString();
        return String.format("%se%s%02d", mantissa, exponent < 0 ? "-" : "+", Math.abs(exponent));
    }

    private Object writer(long schemaId) {
        int id = (int) schemaId;
        Object cached = writers.get(id);
        if (cached != null) {
            return cached;
        }
        Long seen = unknown.get(id);
        if (seen != null && System.currentTimeMillis() - seen < UNKNOWN_TTL_MS) {
            return "unknown schema id " + schemaId;
        }
        String text = lookup(schemaId);
        if (text == null) {
            unknown.put(id, System.currentTimeMillis());
            return "unknown schema id " + schemaId;
        }
        Object result;
        try {
            Schema schema = new Schema.Parser().parse(text);
            Integer version = knownVersions.get(SchemaNormalization.toParsingForm(schema));
            if (version == null) {
                version = schema.getType() == Schema.Type.RECORD && schema.getField("device_id") != null ? 2 : 1;
            }
            result = new Writer(schema, reader, version);
        } catch (Exception e) {  // a schema the registry holds but Avro cannot parse
            result = "schema id " + schemaId + " is not a usable Avro schema: " + e.getMessage();
        }
        writers.put(id, result);
        return result;
    }

    /** GET registry/schemas/ids/{id}: the schema text, or null when the registry answers 404. */
    private String lookup(long schemaId) {
        URI uri = URI.create(registryUrl + "/schemas/ids/" + schemaId);
        Exception error = null;
        for (int attempt = 0; attempt < LOOKUP_ATTEMPTS; attempt++) {
            try {
                HttpResponse<String> response = http.send(
                        HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(5)).GET().build(),
                        HttpResponse.BodyHandlers.ofString());
                if (response.statusCode() == 404) {
                    return null;
                }
                if (response.statusCode() == 200) {
                    JsonNode schema = json.readTree(response.body()).get("schema");
                    if (schema != null && schema.isTextual()) {
                        return schema.asText();
                    }
                    error = new IOException("no schema in the registry's answer: " + response.body());
                } else {
                    error = new IOException("HTTP " + response.statusCode() + ": " + response.body());
                }
            } catch (IOException e) {
                error = e;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new RuntimeException("interrupted looking up schema id " + schemaId, e);
            }
            try {
                Thread.sleep(Math.min(200L << attempt, 5_000L));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new RuntimeException("interrupted looking up schema id " + schemaId, e);
            }
        }
        throw new RuntimeException("schema registry " + registryUrl + " unreachable for schema id " + schemaId
                + ": " + error);
    }
}
