"""Vectorized rule evaluation: feature columns in, one verdict per row out. Pure numpy/pandas, no Flink.

Each rule is a function of the feature frame, its params and the derived columns; it returns a boolean mask.
Rules that fired are merged per row into one verdict: rule ids with versions, a combined score (noisy-OR of
per-severity weights), the resulting severity and one human-readable reason per rule (the rule's template
filled with that row's values). Feature columns come from per-card state (flink/features.py); see docs/rules.md.
"""

from __future__ import annotations

import math
import string
import uuid
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from flink.rules.config import Rule

ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://rtfd.io/fraud-alerts")

# The feature columns the rule UDF receives, in argument order (flink/features.py computes them).
FEATURES = (
    "transaction_id", "amount_eur", "device_id", "hist_n", "hist_sum_log", "hist_sumsq_log", "hist_span_s",
    "cnt_10m", "sum_eur_10m", "tiny_30m", "distance_km", "gap_s", "device_uses", "device_hist",
    "suspect_terminal", "suspect_cards",
)
OUTPUT = ("alert_id", "rules", "score", "severity", "reasons")

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
WEIGHT = {"LOW": 0.3, "MEDIUM": 0.5, "HIGH": 0.8, "CRITICAL": 0.95}
MIN_LOG_STD = 0.25  # a card with near-constant amounts must not turn every small deviation into z=50


def alert_id(transaction_id: str) -> str:
    """Deterministic: a replayed transaction yields the same alert id, so consumers can dedupe."""
    return str(uuid.uuid5(ALERT_NAMESPACE, transaction_id))


def severity_of(score: float) -> str:
    if score >= 0.95:
        return "CRITICAL"
    if score >= 0.8:
        return "HIGH"
    if score >= 0.5:
        return "MEDIUM"
    return "LOW"


def poisson_sf(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """P(X >= k) for X ~ Poisson(lam), elementwise (k >= 0 integers)."""
    k = np.maximum(np.asarray(k, dtype=np.int64), 0)
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 1e-9)
    top = int(k.max(initial=0))
    if top == 0:
        return np.ones_like(lam)
    ks = np.arange(top)
    lgam = np.array([math.lgamma(i + 1) for i in ks])
    log_terms = -lam[:, None] + ks[None, :] * np.log(lam)[:, None] - lgam[None, :]
    terms = np.where(ks[None, :] < k[:, None], np.exp(log_terms), 0.0)
    return np.clip(1.0 - terms.sum(axis=1), 0.0, 1.0)


Columns = dict[str, np.ndarray]  # feature or derived column name -> one value per row
TEXT = ("transaction_id", "device_id", "suspect_terminal")  # the FEATURES that are not numbers


def columns(features: pd.DataFrame) -> Columns:
    """The FEATURES of a frame as arrays: numbers as float64 with NaN for null, text as objects. The rules run
    on plain arrays: per batch, pandas' own per-operation cost outweighed the work (docs/benchmarks.md)."""
    out: Columns = {}
    for name in FEATURES:
        col = features[name]
        if name in TEXT:
            out[name] = col.to_numpy(dtype=object)
            continue
        try:
            out[name] = col.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):  # text where a number belongs: null, as pd.to_numeric(errors="coerce")
            out[name] = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return out


def _zero(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0)


def derive(f: Columns) -> Columns:
    """Columns several rules share: the card's typical amount, z-score, ratio, speed."""
    n = _zero(f["hist_n"])
    safe_n = np.maximum(n, 1)
    mean = _zero(f["hist_sum_log"]) / safe_n
    var = _zero(f["hist_sumsq_log"]) / safe_n - mean**2
    std = np.sqrt(np.maximum(var, MIN_LOG_STD**2))
    amount = f["amount_eur"]
    log_amount = np.log(np.maximum(amount, 1e-6))
    gap_s = f["gap_s"]
    with np.errstate(invalid="ignore", over="ignore"):
        return {
            "typical_eur": np.where(n > 0, np.exp(mean), np.nan),
            "ratio": np.where(n > 0, amount / np.exp(mean), np.nan),
            "z": np.where(n > 0, (log_amount - mean) / std, np.nan),
            "gap_min": gap_s / 60.0,
            "speed_kmh": f["distance_km"] / (np.maximum(gap_s, 1.0) / 3600.0),
        }


# --- the rules: (features, derived, params) -> a boolean per row; comparisons with null (NaN) are False ------
def velocity(f: Columns, d: Columns, p: Mapping) -> np.ndarray:
    """Poisson test of the 10-minute count against the card's own rate before the window; without a known
    baseline (new card, short history) only an absolute count fires."""
    cnt = _zero(f["cnt_10m"])
    n = _zero(f["hist_n"])
    span = _zero(f["hist_span_s"])
    # the card's own rate *before* this window, so a burst does not raise its own baseline
    before_n = n - (cnt - 1)
    before_s = span - 600.0
    known = (before_n >= p["min_history"]) & (before_s >= p["min_baseline_min"] * 60.0)
    rate_per_min = np.where(known, before_n / np.maximum(before_s, 1.0) * 60.0, np.nan)
    expected = rate_per_min * 10.0
    d["expected_10m"] = expected
    fired = ~known & (cnt >= p["min_count_without_history"])
    candidate = known & (cnt >= p["min_count"])
    if candidate.any():
        idx = np.flatnonzero(candidate)
        fired[idx] = poisson_sf(cnt[idx], expected[idx]) < p["max_poisson_p"]
    return fired


def amount_anomaly(f: Columns, d: Columns, p: Mapping) -> np.ndarray:
    return ((_zero(f["hist_n"]) >= p["min_history"]) & (d["z"] >= p["min_z"]) & (d["ratio"] >= p["min_ratio"])
            & (f["amount_eur"] >= p["min_amount_eur"]))


def card_testing(f: Columns, d: Columns, p: Mapping) -> np.ndarray:
    return (_zero(f["tiny_30m"]) >= p["min_tiny"]) & (f["amount_eur"] >= p["large_eur"])


def impossible_travel(f: Columns, d: Columns, p: Mapping) -> np.ndarray:
    return (f["distance_km"] >= p["min_km"]) & (d["speed_kmh"] > p["max_kmh"])


def account_takeover(f: Columns, d: Columns, p: Mapping) -> np.ndarray:
    return (pd.notna(f["device_id"]) & (f["device_uses"] == 1) & (_zero(f["device_hist"]) >= p["min_device_history"])
            & (_zero(f["hist_n"]) >= p["min_history"]) & (d["ratio"] >= p["min_ratio"]))


def compromised_terminal(f: Columns, d: Columns, p: Mapping) -> np.ndarray:
    return _zero(f["suspect_cards"]) >= p["min_cards"]


RULES: dict[str, Callable[[Columns, Columns, Mapping], np.ndarray]] = {
    "velocity": velocity,
    "amount_anomaly": amount_anomaly,
    "card_testing": card_testing,
    "impossible_travel": impossible_travel,
    "account_takeover": account_takeover,
    "compromised_terminal": compromised_terminal,
}


class _Lenient(string.Formatter):
    """Reason templates are data typed by analysts: a missing value or bad format spec must not fail the job."""

    def get_value(self, key, args, kwargs):
        return kwargs.get(key, "?")

    def format_field(self, value, format_spec):
        try:
            return super().format_field(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


_FORMAT = _Lenient()


def reason(rule: Rule, values: Mapping) -> str:
    try:
        return _FORMAT.format(rule.reason, **values)
    except Exception:  # noqa: BLE001 - a broken template still yields an alert
        return rule.reason


def evaluate(features: pd.DataFrame, rules: Mapping[str, Rule], explain: bool = True) -> pd.DataFrame:
    """One output row per feature row: alert_id, rules, score, severity, reasons; all null when nothing fired.
    Without `explain` only score and severity are filled (rule pass 1 needs no more)."""
    f = columns(features)
    d = derive(f)
    n = len(features)
    fired_rules: list[list[str]] = [[] for _ in range(n)]
    reasons: list[list[str]] = [[] for _ in range(n)]
    miss = np.ones(n)  # product of (1 - weight) over fired rules
    for rule_id, rule in rules.items():
        check = RULES.get(rule_id)
        if check is None or not rule.enabled:
            continue
        mask = np.asarray(check(f, d, rule.params), dtype=bool)
        for i in np.flatnonzero(mask):
            fired_rules[i].append(f"{rule_id}@{rule.version}")
            if explain:
                values = {**rule.params, **{k: v[i] for k, v in f.items()}, **{k: v[i] for k, v in d.items()}}
                reasons[i].append(reason(rule, values))
            miss[i] *= 1.0 - WEIGHT[rule.severity]
    scores = [round(1.0 - m, 4) if r else None for m, r in zip(miss, fired_rules, strict=True)]
    return pd.DataFrame({
        "alert_id": [alert_id(t) if r and explain else None
                     for t, r in zip(f["transaction_id"], fired_rules, strict=True)],
        "rules": [r or None for r in fired_rules],
        "score": pd.Series(scores, dtype=object),
        "severity": [severity_of(s) if s is not None else None for s in scores],
        "reasons": [r or None for r in reasons] if explain else [None] * n,
    })[list(OUTPUT)]


def first_pass(inputs: pd.DataFrame, features: pd.DataFrame, rules: Mapping[str, Rule],
               terminal_window_ms: int) -> pd.DataFrame:
    """Rule pass 1 over freshly computed card features, without terminal context (docs/flink.md): per row its
    suspect terminal (where the card last paid in person, at most `terminal_window_ms` before) and the
    severity the rules give it, null when none fired. `inputs` holds transaction_id, amount_eur, device_id
    and event_ms; `features` the flink.features.CARD_FEATURES of the same rows."""
    inputs = inputs.reset_index(drop=True)
    features = features.reset_index(drop=True)
    visit = pd.to_numeric(features["prev_pos_ms"], errors="coerce")
    recent = features["prev_pos_terminal"].notna() & (
        pd.to_numeric(inputs["event_ms"], errors="coerce") - visit <= terminal_window_ms)
    frame = pd.concat([inputs[["transaction_id", "amount_eur", "device_id"]], features], axis=1)
    frame["suspect_terminal"] = None
    frame["suspect_cards"] = None
    verdict = evaluate(frame[list(FEATURES)], rules, explain=False)
    return pd.DataFrame({
        "suspect_terminal": features["prev_pos_terminal"].where(recent.to_numpy(), None).astype(object),
        "first_severity": verdict["severity"],
    })

