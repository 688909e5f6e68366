"""The per-card features in Flink keyed state (io.rtfd.flink.CardFeatures, jvm/functions) on a local Flink
mini-cluster: behind the JVM key selector, the JVM function gives every transaction, in arrival order, the
features flink.features.CardHistory (the Python reference that reference_features runs) gives it.
Integers and strings must be equal; doubles within 1e-9 relative (Java's Math.log / sin / asin may differ
from the C library's in the last bit)."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from py4j.java_gateway import get_field, set_field
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from flink import features as reference
from flink.config import jvm_jars
from flink.features import CARD_FEATURES, HISTORY_ROWS, CardHistory
from flink.fx import to_eur
from flink.job import key_by_column
from flink.rules.config import load_defaults
from flink.stateful import CARD_INPUT, card_features, sql_row_type
from services.producer.simulator import Simulator

pytestmark = pytest.mark.timeout(300)
MIN = 60_000
T0 = 1_750_000_000_000  # hand-made cases: minutes after this
TINY = float(load_defaults()["card_testing"].params["tiny_eur"])
FLOATS = {"hist_sum_log", "hist_sumsq_log", "hist_span_s", "sum_eur_10m", "distance_km", "gap_s"}
OUTPUT = (*CARD_INPUT, *CARD_FEATURES)


def tx(card: str, tid: str, minute: float, eur: float = 20.0, device: str | None = None, lat: float | None = None,
       lon: float | None = None, channel: str = "ECOM", terminal: str | None = None) -> dict:
    return {"transaction_id": tid, "card_token": card, "customer_id": f"cust-{card}", "bank_id": "bank-t",
            "amount_minor": round(eur * 100), "currency": "EUR", "event_ms": T0 + round(minute * MIN),
            "amount_eur": float(eur), "device_id": device, "lat": lat, "lon": lon, "channel": channel,
            "terminal_id": terminal}


def hand_made() -> list[dict]:
    """tests/flink/test_features.py's cases and their edges, one card each, in arrival order."""
    rows = []
    # a late transaction sees only what came before it in event time
    rows += [tx("late", f"late-{i}", 100 + i, 1.0) for i in range(5)]
    rows += [tx("late", "late-early", 90, 900.0), tx("late", "late-on-time", 105, 900.0)]
    # card testing sent out of order
    rows += [tx("shuffled", "sh-1", 9, 1.0), tx("shuffled", "sh-2", 8, 1.0), tx("shuffled", "sh-3", 9.5, 1.0),
             tx("shuffled", "sh-large", 10, 900.0)]
    # velocity and tiny windows are event-time ranges, both ends inclusive; peers at the same time
    rows += [tx("edges", "e-0", 0, 1.0), tx("edges", "e-25", 25, 1.0), tx("edges", "e-31", 31, 50.0),
             tx("edges", "e-30", 30, 2.0), tx("edges", "e-40", 40, 3.0), tx("edges", "e-60", 60, 7.5),
             tx("edges", "e-60b", 60, 0.5), tx("edges", "e-50", 50, 4.0), tx("edges", "e-60c", 60, 0.0),
             tx("edges", "e-70", 70, 12.0)]
    # bounded history, while travel and the card-present terminal reach back beyond it
    rows.append(tx("bounded", "b-zrh", 0, lat=47.37, lon=8.54, channel="POS", terminal="T-ZRH-1"))
    rows += [tx("bounded", f"b-{i}", 60 + i) for i in range(HISTORY_ROWS + 20)]
    rows += [tx("bounded", "b-ber", 200, lat=52.52, lon=13.40),
             tx("bounded", "b-before-zrh", -10, lat=48.85, lon=2.35, channel="POS", terminal="T-PAR-1"),
             tx("bounded", "b-zrh", 0, lat=47.37, lon=8.54, channel="POS", terminal="T-ZRH-1"),  # evicted: anew
             tx("bounded", "b-after-zrh", 1, lat=45.46, lon=9.19),
             tx("bounded", "b-atm", 201, 100.0, lat=52.5, lon=13.4, channel="ATM", terminal="T-ATM-1"),
             tx("bounded", "b-pos-online", 202, channel="POS"),  # card-present without a terminal id
             tx("bounded", "b-half-geo", 203, lat=52.5, channel="POS", terminal="T-BER-2"),
             tx("bounded", "b-next", 204, lat=-33.87, lon=151.21)]
    # eviction's edge: an entry exactly TINY_WINDOW_MS before the newest stays; the newest evicted position and
    # terminal still count for a transaction at their very event time, not for one before it
    rows += [tx("horizon", "h-0", 0, 1.0)] + [tx("horizon", f"h-{i}", 30, 30.0 + i) for i in range(1, 51)]
    rows += [tx("horizon", "h-end", 30, 2.5), tx("horizon", "h-next", 30.001)]
    rows.append(tx("older", "o-rome", 0, lat=41.9, lon=12.5, channel="POS", terminal="T-ROM-1"))
    rows += [tx("older", f"o-{i}", 31 + i / 10) for i in range(55)]
    rows += [tx("older", "o-same", 0, lat=48.2, lon=16.37), tx("older", "o-before", -1, lat=48.2, lon=16.37)]
    # more than HISTORY_ROWS within the tiny window: all kept, the profile the last 50
    rows += [tx("burst", f"u-{i}", i * 0.25, 1.0 + i % 3) for i in range(80)]
    rows += [tx("burst", "u-late", 3.3, 500.0), tx("burst", "u-end", 21, 900.0), tx("burst", "u-after", 60)]
    # device novelty and history; transactions without a device are counted under None
    rows += [tx("device", "d-1", 0, device="d1"), tx("device", "d-2", 1, device="d1"),
             tx("device", "d-3", 2, device="d2"), tx("device", "d-4", 3), tx("device", "d-5", 4),
             tx("device", "d-6", 2.5, device="d1")]
    # a replayed transaction id: the features of the history before it without itself, remembered once
    rows += [tx("replay", "r-1", 0, 1.0), tx("replay", "r-2", 1, 1.0, device="d9"),
             tx("replay", "r-2", 1, 1.0, device="d9"), tx("replay", "r-3", 2, 900.0, device="d9"),
             tx("replay", "r-1", 0, 1.0), tx("replay", "r-4", 3, device="d9")]
    # antipodes (haversine clamps h at 1) and a position at the same place
    rows += [tx("geo", "g-1", 0, lat=0.0, lon=0.0), tx("geo", "g-2", 60, lat=0.0, lon=180.0),
             tx("geo", "g-3", 61, lat=0.0, lon=180.0), tx("geo", "g-4", 62, lat=-45.0, lon=-170.0),
             tx("geo", "g-5", 63, lat=0.08, lon=0.0), tx("geo", "g-6", 64, lat=-0.08, lon=180.0)]  # h rounds > 1
    # one eviction dropping several positions and terminals: the newest of them is the one kept
    rows += [tx("batch", f"x-{i}", i, lat=50.0 + i, lon=5.0, channel="POS", terminal=f"T-X-{i}") for i in range(3)]
    rows += [tx("batch", f"x-online-{i}", 3 + i / 10) for i in range(50)]
    rows += [tx("batch", "x-later", 120), tx("batch", "x-late", 60, lat=40.0, lon=5.0)]
    return rows


def simulated(n: int = 3000, seed: int = 7) -> list[dict]:
    """Simulator traffic of 40 cards over about two hours with fraud scenarios and look-alikes, in arrival
    order: mostly in event time, some rows a little late, a few very late (behind their card's evictions), and
    some transaction ids replayed, soon or long after."""
    sim = Simulator("bank-t", b"k" * 32, seed=seed, fraud_rate=0.03, legit_pattern_rate=0.02, customers=40, tps=0.3)
    rows = []
    for event in (sim.next_event() for _ in range(n)):
        r = event.record
        rows.append({"transaction_id": r["transaction_id"], "card_token": r["card_token"],
                     "customer_id": r["customer_id"], "bank_id": r["bank_id"], "amount_minor": r["amount_minor"],
                     "currency": r["currency"], "event_ms": r["event_time"],
                     "amount_eur": to_eur(r["amount_minor"], r["currency"]), "device_id": r.get("device_id"),
                     "lat": r["lat"], "lon": r["lon"], "channel": r["channel"], "terminal_id": r["terminal_id"]})
    rng = random.Random(seed)
    arrivals = []
    for i, row in enumerate(rows):
        u = rng.random()
        delay = rng.randint(1, 100) if u < 0.06 else rng.randint(500, 2000) if u < 0.065 else 0
        arrivals.append((i + delay, i, row))
        u = rng.random()
        if u < 0.015:
            arrivals.append((i + rng.randint(0, 30), i, row))
        elif u < 0.02:
            arrivals.append((i + rng.randint(500, 1500), i, row))
    return [row for _, _, row in sorted(arrivals, key=lambda a: a[:2])]


def expected(rows: list[dict]) -> list[dict]:
    """CardHistory's features of each row, in arrival order (one history per card)."""
    cards: dict[str, CardHistory] = defaultdict(CardHistory)
    return [cards[r["card_token"]].features(r["transaction_id"], r["event_ms"], r["amount_eur"], TINY,
                                            r["device_id"], r["lat"], r["lon"], r["channel"], r["terminal_id"])
            for r in rows]


def mini_cluster() -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(jar.as_uri() for jar in jvm_jars()))
    conf.set_string("pipeline.generic-types", "false")  # the state must not fall back to Kryo
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)  # one source, arrival order kept through the keyed exchange
    return env, StreamTableEnvironment.create(env)


def matches(got, want, name: str) -> bool:
    if want is None or got is None or name not in FLOATS:
        return got == want and type(got) is type(want)
    return isinstance(got, float) and got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_java_constants_are_the_reference_ones():
    mini_cluster()  # puts the job's jars on the gateway's class path
    java = get_gateway().jvm.io.rtfd.flink.CardFeatures
    assert (java.HISTORY_ROWS, java.TINY_WINDOW_MS, java.VELOCITY_WINDOW_MS, java.FEATURES) == (
        reference.HISTORY_ROWS, reference.TINY_WINDOW_MS, reference.VELOCITY_WINDOW_MS, len(CARD_FEATURES))


def test_jvm_card_features_equal_the_reference():
    rows = hand_made() + simulated()
    env, t_env = mini_cluster()
    table = t_env.from_elements([tuple(r[c] for c in CARD_INPUT) for r in rows], sql_row_type(CARD_INPUT))
    featured = card_features(key_by_column(t_env.to_data_stream(table), "card_token"), TINY, CARD_INPUT)
    got = defaultdict(list)  # transaction id -> outputs in arrival order (a replayed id has several)
    with featured.execute_and_collect() as results:
        for result in results:
            out = dict(zip(OUTPUT, tuple(result), strict=True))
            got[out["transaction_id"]].append(out)
    want = defaultdict(list)
    for r, f in zip(rows, expected(rows), strict=True):
        want[r["transaction_id"]].append({**r, **f})
    assert {t: len(outs) for t, outs in got.items()} == {t: len(outs) for t, outs in want.items()}
    mismatches = [(tid, i, name, out[name], w[name])
                  for tid, outs in want.items() for i, (w, out) in enumerate(zip(outs, got[tid], strict=True))
                  for name in OUTPUT if not matches(out[name], w[name], name)]
    assert not mismatches, f"{len(mismatches)} differences, the first: {mismatches[:10]}"

    # the cases that matter happened, and the hand-made ones came out as test_features.py says
    flat = [w for outs in want.values() for w in outs]
    assert sum(w["hist_n"] == HISTORY_ROWS for w in flat) > 500 and sum(w["tiny_30m"] > 0 for w in flat) > 100
    assert sum(w["distance_km"] is not None for w in flat) > 500 and sum(w["device_uses"] > 1 for w in flat) > 500
    assert sum(len(outs) > 1 for outs in want.values()) > 30  # replays
    one = {tid: outs[0] for tid, outs in got.items()}
    assert (one["late-early"]["hist_n"], one["late-early"]["tiny_30m"], one["late-early"]["cnt_10m"]) == (0, 0, 1)
    assert (one["late-on-time"]["hist_n"], one["late-on-time"]["tiny_30m"], one["late-on-time"]["cnt_10m"]) == (
        6, 5, 6)
    assert one["sh-large"]["tiny_30m"] == 3
    assert (one["e-31"]["tiny_30m"], one["e-31"]["cnt_10m"], one["e-31"]["sum_eur_10m"]) == (1, 2, 51.0)
    berlin = one["b-ber"]
    assert berlin["hist_n"] == HISTORY_ROWS and berlin["gap_s"] == 200 * 60
    assert berlin["prev_pos_terminal"] == "T-ZRH-1" and berlin["prev_pos_ms"] == T0
    assert one["h-end"]["tiny_30m"] == 1 and one["h-next"]["tiny_30m"] == 0 and one["h-next"]["hist_n"] == 50
    assert (one["o-same"]["gap_s"], one["o-same"]["prev_pos_terminal"], one["o-same"]["prev_pos_ms"]) == (
        0.0, "T-ROM-1", T0)
    assert one["o-before"]["distance_km"] is None and one["o-before"]["prev_pos_terminal"] is None
    assert (one["x-late"]["prev_pos_terminal"], one["x-late"]["prev_pos_ms"]) == ("T-X-2", T0 + 2 * MIN)
    assert one["g-6"]["distance_km"] == pytest.approx(6371.0 * 3.141592653589793)
    assert one["b-before-zrh"]["distance_km"] is None and one["b-before-zrh"]["prev_pos_terminal"] is None
    assert [o["device_uses"] for o in got["r-2"]] == [1, 1] and got["r-2"][1]["hist_n"] == 1
    assert (one["r-3"]["hist_n"], one["r-3"]["tiny_30m"], one["r-3"]["device_uses"]) == (2, 2, 2)
    assert [o["device_uses"] for o in (one["d-1"], one["d-2"], one["d-3"], one["d-4"], one["d-5"])] == [1, 2, 1, 1, 2]


def test_card_state_survives_its_serializer_and_a_restore():
    """What a checkpoint or savepoint does to the state: serialize with the state type's serializer (Flink's
    POJO, list and map serializers, no Kryo), write the serializer's snapshot, and read the state back with
    the serializer restored from that snapshot."""
    mini_cluster()
    jvm = get_gateway().jvm
    function = jvm.io.rtfd.flink.CardFeatures
    state_type = function.STATE_TYPE
    assert "Generic" not in state_type.toString() and "Kryo" not in state_type.toString(), state_type.toString()
    config = jvm.org.apache.flink.api.common.serialization.SerializerConfigImpl()
    config.setGenericTypes(False)
    serializer = state_type.createSerializer(config)

    state = jvm.io.rtfd.flink.CardFeatures.CardState()
    for i, (lat, terminal, log_amount) in enumerate([(47.37, "T-1", 3.0), (None, None, None)]):
        entry = jvm.io.rtfd.flink.CardFeatures.Entry()
        for name, value in (("t", T0 + i), ("tx", f"tx-{i}"), ("amountEur", 20.5 * i), ("tiny", i == 1),
                            ("device", i == 0), ("lat", lat), ("lon", lat and 8.54), ("posTerminal", terminal),
                            ("logAmount", log_amount)):
            set_field(entry, name, value)
        get_field(state, "entries").add(entry)
    get_field(state, "devices").put("d1", 3)
    for name, value in (("noDeviceUses", 2), ("lastGeoT", T0 - MIN), ("lastGeoLat", 1.5), ("lastGeoLon", -2.5),
                        ("lastPosT", None), ("lastPosTerminal", None)):
        set_field(state, name, value)

    out = jvm.org.apache.flink.core.memory.DataOutputSerializer(256)
    serializer.serialize(state, out)
    data = out.getCopyOfBuffer()
    snapshot_out = jvm.org.apache.flink.core.memory.DataOutputSerializer(256)
    snapshots = jvm.org.apache.flink.api.common.typeutils.TypeSerializerSnapshot
    snapshots.writeVersionedSnapshot(snapshot_out, serializer.snapshotConfiguration())
    snapshot = snapshots.readVersionedSnapshot(
        jvm.org.apache.flink.core.memory.DataInputDeserializer(snapshot_out.getCopyOfBuffer()),
        jvm.java.lang.Thread.currentThread().getContextClassLoader())
    assert serializer.snapshotConfiguration().resolveSchemaCompatibility(snapshot).isCompatibleAsIs()
    restored = snapshot.restoreSerializer().deserialize(jvm.org.apache.flink.core.memory.DataInputDeserializer(data))

    again = jvm.org.apache.flink.core.memory.DataOutputSerializer(256)
    serializer.serialize(restored, again)
    assert bytes(again.getCopyOfBuffer()) == bytes(data)
    entries = get_field(restored, "entries")
    first, second = entries.get(0), entries.get(1)
    assert [get_field(first, n) for n in ("t", "tx", "lat", "lon", "posTerminal", "logAmount", "device")] == [
        T0, "tx-0", 47.37, 8.54, "T-1", 3.0, True]
    assert [get_field(second, n) for n in ("lat", "lon", "posTerminal", "logAmount", "tiny")] == [
        None, None, None, None, True]
    assert get_field(restored, "devices").get("d1") == 3 and entries.size() == 2
    assert [get_field(restored, n) for n in ("noDeviceUses", "lastGeoT", "lastGeoLat", "lastPosT")] == [
        2, T0 - MIN, 1.5, None]

