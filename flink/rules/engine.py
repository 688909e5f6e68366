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


def derive(f: pd.DataFrame) -> pd.DataFrame:
    """Columns several rules share: the card's typical amount, z-score, ratio, speed."""
    d = pd.DataFrame(index=f.index)
    n = f["hist_n"].fillna(0).to_numpy(dtype=float)
    safe_n = np.maximum(n, 1)
    mean = f["hist_sum_log"].fillna(0).to_numpy(dtype=float) / safe_n
    var = f["hist_sumsq_log"].fillna(0).to_numpy(dtype=float) / safe_n - mean**2
    std = np.sqrt(np.maximum(var, MIN_LOG_STD**2))
    amount = f["amount_eur"].to_numpy(dtype=float)
    log_amount = np.log(np.maximum(amount, 1e-6))
    d["typical_eur"] = np.where(n > 0, np.exp(mean), np.nan)
    d["ratio"] = np.where(n > 0, amount / np.exp(mean), np.nan)
    d["z"] = np.where(n > 0, (log_amount - mean) / std, np.nan)
    gap_s = f["gap_s"].to_numpy(dtype=float)
    d["gap_min"] = gap_s / 60.0
    d["speed_kmh"] = f["distance_km"].to_numpy(dtype=float) / (np.maximum(gap_s, 1.0) / 3600.0)
    return d


# --- the rules ----------------------------------------------------------------------------------------------
def velocity(f: pd.DataFrame, d: pd.DataFrame, p: Mapping) -> np.ndarray:
    """Poisson test of the 10-minute count against the card's own rate before the window; without a known
    baseline (new card, short history) only an absolute count fires."""
    cnt = f["cnt_10m"].fillna(0).to_numpy(dtype=float)
    n = f["hist_n"].fillna(0).to_numpy(dtype=float)
    span = f["hist_span_s"].fillna(0).to_numpy(dtype=float)
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


def amount_anomaly(f: pd.DataFrame, d: pd.DataFrame, p: Mapping) -> np.ndarray:
    return ((f["hist_n"].fillna(0) >= p["min_history"]) & (d["z"] >= p["min_z"]) & (d["ratio"] >= p["min_ratio"])
            & (f["amount_eur"] >= p["min_amount_eur"])).to_numpy()


def card_testing(f: pd.DataFrame, d: pd.DataFrame, p: Mapping) -> np.ndarray:
    return ((f["tiny_30m"].fillna(0) >= p["min_tiny"]) & (f["amount_eur"] >= p["large_eur"])).to_numpy()


def impossible_travel(f: pd.DataFrame, d: pd.DataFrame, p: Mapping) -> np.ndarray:
    return ((f["distance_km"] >= p["min_km"]) & (d["speed_kmh"] > p["max_kmh"])).fillna(False).to_numpy(dtype=bool)


def account_takeover(f: pd.DataFrame, d: pd.DataFrame, p: Mapping) -> np.ndarray:
    return (f["device_id"].notna() & (f["device_uses"] == 1) & (f["device_hist"].fillna(0) >= p["min_device_history"])
            & (f["hist_n"].fillna(0) >= p["min_history"]) & (d["ratio"] >= p["min_ratio"])).fillna(False).to_numpy(
                dtype=bool)


def compromised_terminal(f: pd.DataFrame, d: pd.DataFrame, p: Mapping) -> np.ndarray:
    return (pd.to_numeric(f["suspect_cards"], errors="coerce").fillna(0) >= p["min_cards"]).to_numpy()


RULES: dict[str, Callable[[pd.DataFrame, pd.DataFrame, Mapping], np.ndarray]] = {
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


def evaluate(features: pd.DataFrame, rules: Mapping[str, Rule]) -> pd.DataFrame:
    """One output row per feature row: alert_id, rules, score, severity, reasons; all null when nothing fired."""
    f = features.reset_index(drop=True)
    for name in FEATURES:
        if name not in ("transaction_id", "device_id", "suspect_terminal"):
            f[name] = pd.to_numeric(f[name], errors="coerce").astype("float64")
    d = derive(f)
    n = len(f)
    fired_rules: list[list[str]] = [[] for _ in range(n)]
    reasons: list[list[str]] = [[] for _ in range(n)]
    miss = np.ones(n)  # product of (1 - weight) over fired rules
    for rule_id, rule in rules.items():
        check = RULES.get(rule_id)
        if check is None or not rule.enabled:
            continue
        mask = np.asarray(check(f, d, rule.params), dtype=bool)
        for i in np.flatnonzero(mask):
            values = {**rule.params, **f.iloc[i].to_dict(), **d.iloc[i].to_dict()}
            fired_rules[i].append(f"{rule_id}@{rule.version}")
            reasons[i].append(reason(rule, values))
            miss[i] *= 1.0 - WEIGHT[rule.severity]
    scores = [round(1.0 - m, 4) if r else None for m, r in zip(miss, fired_rules, strict=True)]
    return pd.DataFrame({
        "alert_id": [alert_id(t) if r else None for t, r in zip(f["transaction_id"], fired_rules, strict=True)],
        "rules": [r or None for r in fired_rules],
        "score": pd.Series(scores, dtype=object),
        "severity": [severity_of(s) if s is not None else None for s in scores],
        "reasons": [r or None for r in reasons],
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
    verdict = evaluate(frame[list(FEATURES)], rules)
    return pd.DataFrame({
        "suspect_terminal": features["prev_pos_terminal"].where(recent.to_numpy(), None).astype(object),
        "first_severity": verdict["severity"],
    })

