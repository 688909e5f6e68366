"""The analysts' dashboard as a Panel Viewer: a live alert feed with KPIs, triage of one alert, and history.

One FraudDashboard per browser session, each with its own database connection (opened on first use). Nothing
runs at import: `python -m dashboards` serves it, and `panel serve dashboards/app.py` works too (the
`pn.state.served` block at the end).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import panel as pn
import param
import psycopg
from bokeh.models import ColumnDataSource, HoverTool, LinearAxis, NumberFormatter, NumeralTickFormatter, Range1d
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from dashboards import data
from services.alerts.alert import SEVERITIES

log = logging.getLogger(__name__)

ALL = "(all)"
SEVERITY_COLORS = {"LOW": "#6c757d", "MEDIUM": "#d39e00", "HIGH": "#e8590c", "CRITICAL": "#c92a2a"}
STATUS_LABELS = {"open": "open", "confirmed_fraud": "confirmed fraud", "false_positive": "false positive"}
MUTED = {"color": "#6c757d", "font-size": "0.9em"}
FEED_DISPLAY = ["detected", "bank", "severity", "score", "rules", "amount", "status", "assignee", "alert_id"]
HISTORY_DIMENSIONS = {"bank": "Bank", "mcc": "MCC", "channel": "Channel", "country": "Country"}


# --- transform: rows -> display frames -------------------------------------------------------------------------
def _hms(ts: datetime | None) -> str:
    return "" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def feed_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Alert rows as the feed shows them (the hidden columns keep what triage needs)."""
    return pd.DataFrame(
        {
            "detected": [_hms(r["detected_at"]) for r in rows],
            "bank": [r["bank_id"] for r in rows],
            "severity": [r["severity"] for r in rows],
            "score": [round(r["score"], 3) for r in rows],
            "rules": [", ".join(r["rules"]) for r in rows],
            "amount": [f"{data.major_amount(r['amount_minor'], r['currency']):,.2f} {r['currency']}" for r in rows],
            "status": [STATUS_LABELS.get(r["status"], r["status"]) for r in rows],
            "assignee": [r["assignee"] or "" for r in rows],
            "alert_id": [r["alert_id"] for r in rows],
            "stored": [r["stored_at"].isoformat() for r in rows],
        },
        columns=[*FEED_DISPLAY, "stored"],
    ).astype({c: ("float64" if c == "score" else "object") for c in [*FEED_DISPLAY, "stored"]})


def _frame(rows: Sequence[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(columns))


# --- views: history figures (Bokeh, no map tiles: everything is served by the dashboard itself) --------------------
def _figure(title: str, **kw) -> figure:
    fig = figure(title=title, height=300, sizing_mode="stretch_width", toolbar_location="above", **kw)
    fig.toolbar.logo = None
    return fig


def daily_volume_figure(rows: Sequence[dict]) -> figure:
    df = _frame(rows, ["day", "transactions", "alerts", "confirmed_fraud"])
    fig = _figure("Daily volume: transactions (bars) and alerts (line)", x_axis_type="datetime")
    src = ColumnDataSource(df)
    fig.vbar(x="day", top="transactions", width=0.8 * 86_400_000, source=src, color="#4c6ef5", alpha=0.6)
    top = max(int(df["alerts"].max()) if len(df) else 0, 1)
    fig.extra_y_ranges = {"alerts": Range1d(0, top * 1.15)}
    fig.add_layout(LinearAxis(y_range_name="alerts", axis_label="alerts"), "right")
    fig.line(x="day", y="alerts", y_range_name="alerts", source=src, color="#c92a2a", line_width=2)
    fig.scatter(x="day", y="alerts", y_range_name="alerts", source=src, color="#c92a2a", size=6)
    fig.yaxis[0].axis_label = "transactions"
    fig.add_tools(HoverTool(tooltips=[("day", "@day{%F}"), ("transactions", "@transactions"),
                                      ("alerts", "@alerts"), ("confirmed", "@confirmed_fraud")],
                            formatters={"@day": "datetime"}))  # fmt: skip
    return fig


def alert_rate_figure(rows: Sequence[dict], label: str) -> figure:
    df = _frame(rows, ["key", "transactions", "alerts", "alert_rate"]).iloc[::-1]
    df["key"] = df["key"].astype(str)
    fig = _figure(f"Alert rate by {label}", y_range=list(df["key"]))
    fig.hbar(y="key", right="alert_rate", height=0.7, source=ColumnDataSource(df), color="#e8590c")
    fig.xaxis.formatter = NumeralTickFormatter(format="0.0%")
    fig.add_tools(HoverTool(tooltips=[(label, "@key"), ("rate", "@alert_rate{0.00%}"),
                                      ("alerts", "@alerts"), ("transactions", "@transactions")]))  # fmt: skip
    return fig


def rule_hits_figure(rows: Sequence[dict]) -> figure:
    df = _frame(rows, ["day", "rule", "hits"])
    fig = _figure("Rule hits per day", x_axis_type="datetime")
    for i, (rule, part) in enumerate(df.groupby("rule", sort=True)):
        color = Category10_10[i % 10]
        fig.line(part["day"], part["hits"], legend_label=str(rule), color=color, line_width=2)
        fig.scatter(part["day"], part["hits"], color=color, size=5)
    if len(df):
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
    return fig


def alert_map_figure(rows: Sequence[dict]) -> figure:
    """Alerts per grid cell on plain lon/lat axes: no tile server (the dashboard runs offline)."""
    df = _frame(rows, ["lat", "lon", "alerts", "max_score"])
    df["size"] = 6 + 4 * (df["alerts"].astype(float) ** 0.5) if len(df) else []
    fig = _figure("Where alerts happen (lon/lat, cell = 0.5°)", match_aspect=True)
    fig.height = 380
    fig.scatter("lon", "lat", size="size", source=ColumnDataSource(df), color="#c92a2a", alpha=0.5,
                line_color="#7a1010")  # fmt: skip
    fig.xaxis.axis_label, fig.yaxis.axis_label = "longitude", "latitude"
    fig.add_tools(HoverTool(tooltips=[("cell", "@lat, @lon"), ("alerts", "@alerts"), ("max score", "@max_score")]))
    return fig


# --- the app -------------------------------------------------------------------------------------------------------
class FraudDashboard(pn.viewable.Viewer):
    """Live alert feed and KPIs, triage of the selected alert, history; one instance per browser session."""

    bank = param.Selector(default=ALL, objects=[ALL], doc="Only alerts of this bank")
    severity = param.Selector(default=ALL, objects=[ALL, *SEVERITIES], doc="Only alerts of this severity")
    rule = param.Selector(default=ALL, objects=[ALL], doc="Only alerts naming this rule")
    history_days = param.Integer(default=14, bounds=(1, 365), doc="History covers the last N days")
    history_bank = param.Selector(default=ALL, objects=[ALL], doc="History of one bank only")
    history_dimension = param.Selector(default="bank", objects=list(HISTORY_DIMENSIONS))
    min_volume = param.Integer(default=20, bounds=(1, None), doc="Riskiest lists need this many transactions")

    def __init__(self, dsn: str, poll_ms: int = 1000, feed_window: int = 500, **params):
        super().__init__(**params)
        self._dsn = dsn
        self._conn: psycopg.Connection | None = None
        self.poll_ms = poll_ms
        self.feed_window = feed_window
        self._cursor = data.FeedCursor()
        self._selected: dict | None = None
        self._ticks = 0
        self._callback = None
        self._history_loaded = False
        self._build()

    # --- extract --------------------------------------------------------------------------------------------------
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=5, options="-c statement_timeout=20000",
                application_name="rtfd-dashboard",
            )  # fmt: skip
        return self._conn

    def close(self, *_args) -> None:
        if self._callback is not None:
            self._callback.stop()
        if self._conn is not None:
            self._conn.close()

    @property
    def filters(self) -> data.FeedFilter:
        def pick(value):
            return None if value == ALL else value

        return data.FeedFilter(bank=pick(self.bank), severity=pick(self.severity), rule=pick(self.rule))

    # --- views ----------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.status = pn.pane.HTML("", styles=MUTED, sizing_mode="stretch_width")
        number = {"font_size": "30pt", "title_size": "11pt", "width": 190}
        self.kpi_tps = pn.indicators.Number(name="Transactions/s", value=0, format="{value:,.1f}", **number)
        self.kpi_aps = pn.indicators.Number(name="Alerts/s", value=0, format="{value:,.1f}", **number)
        self.kpi_p50 = pn.indicators.Number(name="Latency p50 (5 min)", value=0, format="{value:,.0f} ms", **number)
        self.kpi_p99 = pn.indicators.Number(name="Latency p99 (5 min)", value=0, format="{value:,.0f} ms",
                                            colors=[(1000, "#2b8a3e"), (5000, "#e8590c"), (1e12, "#c92a2a")],
                                            **number)  # fmt: skip
        self.bank_rates = pn.widgets.Tabulator(
            _frame([], ["bank_id", "transactions", "alerts", "alert_rate"]), show_index=False, disabled=True,
            selectable=False, height=150, width=420, formatters={"alert_rate": NumberFormatter(format="0.00%")},
            titles={"bank_id": "bank", "alert_rate": "alerts / tx"}, name="Fraud-alert rate by bank (15 min)",
        )  # fmt: skip
        self.feed = pn.widgets.Tabulator(
            feed_frame([]), show_index=False, disabled=True, selectable=1, hidden_columns=["stored"],
            sorters=[{"field": "stored", "dir": "desc"}], height=560, sizing_mode="stretch_width",
            layout="fit_data_stretch", name="feed",
        )  # fmt: skip
        self.feed.param.watch(self._on_select, "selection")
        filters = pn.Param(
            self, parameters=["bank", "severity", "rule"], show_name=False, default_layout=pn.Row,
            widgets={p: {"type": pn.widgets.Select, "width": 180} for p in ("bank", "severity", "rule")},
        )  # fmt: skip

        # triage
        self.alert_info = pn.pane.Markdown("Select an alert in the feed to triage it.", sizing_mode="stretch_width")
        self.tx_info = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.card_history = pn.widgets.Tabulator(
            _frame([], ["event_time", "merchant_id", "mcc", "amount", "channel", "country", "alerted"]),
            show_index=False, disabled=True, height=260, sizing_mode="stretch_width", layout="fit_data_stretch",
        )  # fmt: skip
        self.assignee = pn.widgets.TextInput(name="Assignee", value=self._user() or "", width=180)
        self.note = pn.widgets.TextAreaInput(name="Note", placeholder="why", height=70, sizing_mode="stretch_width")
        self.btn_fraud = pn.widgets.Button(name="Confirmed fraud", button_type="danger", disabled=True)
        self.btn_legit = pn.widgets.Button(name="False positive", button_type="success", disabled=True)
        self.btn_fraud.on_click(lambda _e: self._resolve("fraud"))
        self.btn_legit.on_click(lambda _e: self._resolve("legit"))
        self.triage_msg = pn.pane.HTML("", styles=MUTED)
        triage = pn.Column(
            "### Triage", self.alert_info, self.tx_info, "**Card history (last 20)**", self.card_history,
            pn.Row(self.assignee, self.note, sizing_mode="stretch_width"),
            pn.Row(self.btn_fraud, self.btn_legit, self.triage_msg), width=560, name="triage",
        )  # fmt: skip

        live = pn.Column(
            pn.Row(self.kpi_tps, self.kpi_aps, self.kpi_p50, self.kpi_p99, self.bank_rates),
            pn.Row(pn.Column(filters, self.feed, sizing_mode="stretch_width"), triage, sizing_mode="stretch_width"),
            name="Live", sizing_mode="stretch_width",
        )  # fmt: skip

        # history
        self.history_area = pn.Column(sizing_mode="stretch_width")
        history_controls = pn.Param(
            self, parameters=["history_days", "history_bank", "history_dimension", "min_volume"], show_name=False,
            default_layout=pn.Row,
            widgets={"history_days": {"type": pn.widgets.IntInput, "width": 120, "name": "Days"},
                     "history_bank": {"type": pn.widgets.Select, "width": 160, "name": "Bank"},
                     "history_dimension": {"type": pn.widgets.Select, "width": 160, "name": "Alert rate by"},
                     "min_volume": {"type": pn.widgets.IntInput, "width": 160, "name": "Min. transactions"}},
        )  # fmt: skip
        refresh = pn.widgets.Button(name="Refresh history", button_type="primary", align="end")
        refresh.on_click(lambda _e: self.load_history())
        history = pn.Column(pn.Row(history_controls, refresh), self.history_area, name="History",
                            sizing_mode="stretch_width")  # fmt: skip

        self.tabs = pn.Tabs(live, history, sizing_mode="stretch_width", dynamic=False)
        self.tabs.param.watch(self._on_tab, "active")
        user = self._user()
        header = pn.pane.HTML(
            "<h2 style='margin:6px 0'>rtfd · card fraud: live alerts and triage</h2>"
            + (f"<div style='position:absolute;right:16px;top:14px'>{user} · "
               "<a href='/logout' style='color:#fff'>sign out</a></div>" if user else ""),
            styles={"background": "#1f2d3d", "color": "#fff", "padding": "4px 16px", "border-radius": "4px"},
            sizing_mode="stretch_width",
        )  # fmt: skip
        self.layout = pn.Column(header, self.status, self.tabs, sizing_mode="stretch_width")

    def __panel__(self):
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.onload(self.start)
            pn.state.on_session_destroyed(self.close)
        return self.layout

    @staticmethod
    def _user() -> str | None:
        user = pn.state.user
        return None if user in (None, "guest") else user

    # --- live ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """First page of the feed, then the periodic refresh (every poll_ms)."""
        self.refresh_options()
        self.tick()
        self._callback = pn.state.add_periodic_callback(self.tick, period=self.poll_ms)

    def refresh_options(self) -> None:
        try:
            options = data.filter_options(self.conn())
        except psycopg.Error as exc:
            self._error(exc)
            return
        banks = [ALL, *options["banks"]]
        for name, objects in (("bank", banks), ("rule", [ALL, *options["rules"]]), ("history_bank", banks)):
            if getattr(self, name) not in objects:
                objects.append(getattr(self, name))
            self.param[name].objects = objects

    def tick(self) -> None:
        """One refresh: the alerts stored since the last one go into the feed, and the KPIs are recomputed."""
        try:
            conn = self.conn()
            rows = data.new_alerts(conn, self._cursor, self.filters, limit=self.feed_window)
            if rows and self.feed.value.empty:
                self.feed.value = feed_frame(rows)
            elif rows:
                self.feed.stream(feed_frame(rows), rollover=self.feed_window, follow=False)
            kpis = data.live_kpis(conn)
            self.kpi_tps.value = kpis.transactions_per_s
            self.kpi_aps.value = kpis.alerts_per_s
            self.kpi_p50.value = 1000 * (kpis.latency_p50_s or 0)
            self.kpi_p99.value = 1000 * (kpis.latency_p99_s or 0)
            self._ticks += 1
            if self._ticks % 5 == 1:  # the 15-minute rates and the filter lists change slowly
                self.bank_rates.value = _frame(data.fraud_rate_by_bank(conn),
                                               ["bank_id", "transactions", "alerts", "alert_rate"])  # fmt: skip
            if self._ticks % 30 == 0:
                self.refresh_options()
        except psycopg.Error as exc:
            self._error(exc)
            return
        self.status.object = (
            f"Live · updated {_hms(kpis.at)} UTC · {len(self.feed.value)} alerts in the feed "
            f"(newest {self.feed_window} kept) · {kpis.latency_samples} alerts in the last 5 min"
        )

    def _error(self, exc: Exception) -> None:
        log.warning("dashboard query failed: %s", exc)
        self.status.object = f"<span style='color:#c92a2a'>Database unavailable, retrying: {exc}</span>"

    @param.depends("bank", "severity", "rule", watch=True)
    def _on_filter(self) -> None:
        """A new filter starts the feed over with the newest alerts that match it."""
        self._cursor = data.FeedCursor()
        self.feed.value = feed_frame([])
        if self._callback is not None:
            self.tick()

    # --- triage --------------------------------------------------------------------------------------------------
    def _on_select(self, event) -> None:
        selected = self.feed.selected_dataframe
        if selected.empty:
            return
        self.show_alert(selected.iloc[0]["alert_id"])

    def show_alert(self, alert_id: str) -> None:
        try:
            conn = self.conn()
            alert = data.alert(conn, alert_id)
            tx = data.transaction(conn, alert["transaction_id"])
            history = data.card_history(conn, alert["card_token"])
        except (psycopg.Error, LookupError) as exc:
            self.triage_msg.object = f"<span style='color:#c92a2a'>{exc}</span>"
            return
        self._selected = alert
        color = SEVERITY_COLORS.get(alert["severity"], "#000")
        self.alert_info.object = "\n".join([
            f"**Alert** `{alert['alert_id']}` · <span style='color:{color}'>**{alert['severity']}**</span> "
            f"· score **{alert['score']:.3f}** · status **{STATUS_LABELS.get(alert['status'], alert['status'])}**",
            "",
            f"**Rules:** {', '.join(alert['rules'])}",
            "",
            "**Reasons:**",
            *[f"- {reason}" for reason in alert["reasons"] or ["(none given)"]],
            "",
            f"Detected {_hms(alert['detected_at'])} UTC, "
            f"{(alert['detected_at'] - alert['event_time']).total_seconds() * 1000:,.0f} ms after the event"
            + (f" · triaged by {alert['assignee']}" if alert["assignee"] else "")
            + (f": _{alert['note']}_" if alert["note"] else ""),
        ])  # fmt: skip
        if tx is None:
            self.tx_info.object = f"Transaction `{alert['transaction_id']}` is not in the archive (yet)."
        else:
            where = f"{tx['lat']:.3f}, {tx['lon']:.3f}" if tx["lat"] is not None else "no location"
            self.tx_info.object = (
                f"**Transaction** `{tx['transaction_id']}` · {_hms(tx['event_time'])} UTC · "
                f"**{data.major_amount(tx['amount_minor'], tx['currency']):,.2f} {tx['currency']}** · "
                f"{tx['channel']} · MCC {tx['mcc']} · merchant `{tx['merchant_id']}` · terminal "
                f"`{tx['terminal_id']}` · {tx['country']} ({where}) · card `{tx['card_token'][:16]}…` · "
                f"customer `{tx['customer_id']}`" + (f" · device `{tx['device_id']}`" if tx["device_id"] else "")
            )
        self.card_history.value = pd.DataFrame(
            {
                "event_time": [_hms(h["event_time"]) for h in history],
                "merchant_id": [h["merchant_id"] for h in history],
                "mcc": [h["mcc"] for h in history],
                "amount": [f"{data.major_amount(h['amount_minor'], h['currency']):,.2f} {h['currency']}"
                           for h in history],  # fmt: skip
                "channel": [h["channel"] for h in history],
                "country": [h["country"] for h in history],
                "alerted": ["⚠" if h["alerted"] else "" for h in history],
            }
        )
        self.note.value = alert["note"] or ""
        if alert["assignee"]:
            self.assignee.value = alert["assignee"]
        self.btn_fraud.disabled = self.btn_legit.disabled = False
        self.triage_msg.object = ""

    def _resolve(self, decision: str) -> None:
        if self._selected is None:
            return
        alert_id = self._selected["alert_id"]
        try:
            updated = data.triage(self.conn(), alert_id, decision, note=self.note.value,
                                  assignee=self.assignee.value or self._user())  # fmt: skip
        except (psycopg.Error, LookupError, ValueError) as exc:
            self.triage_msg.object = f"<span style='color:#c92a2a'>not saved: {exc}</span>"
            return
        matches = self.feed.value.index[self.feed.value["alert_id"] == alert_id]
        if len(matches):
            label = STATUS_LABELS[updated["status"]]
            self.feed.patch({"status": [(matches[0], label)], "assignee": [(matches[0], updated["assignee"] or "")]})
        self.show_alert(alert_id)
        self.triage_msg.object = f"saved: {STATUS_LABELS[updated['status']]}"

    # --- history -------------------------------------------------------------------------------------------------
    def _on_tab(self, event) -> None:
        if event.new == 1 and not self._history_loaded:
            self.load_history()

    def load_history(self) -> None:
        period = data.Period.last(self.history_days, None if self.history_bank == ALL else self.history_bank)
        try:
            conn = self.conn()
            volumes = data.daily_volumes(conn, period)
            rates = data.alert_rate_by(conn, self.history_dimension, period, limit=20)
            hits = data.rule_hits_per_day(conn, period)
            precision = data.rule_precision(conn, period)
            merchants = data.riskiest_merchants(conn, period, self.min_volume)
            terminals = data.riskiest_terminals(conn, period, self.min_volume)
            spots = data.alert_map(conn, period)
        except psycopg.Error as exc:
            self._error(exc)
            return
        self._history_loaded = True
        risk_cols = ["key", "transactions", "alerts", "alert_rate"]
        percent = {"alert_rate": NumberFormatter(format="0.00%")}

        def table(rows, columns, title, **kw):
            return pn.Column(f"**{title}**", pn.widgets.Tabulator(
                _frame(rows, columns), show_index=False, disabled=True, height=260, sizing_mode="stretch_width",
                layout="fit_data_stretch", **kw))  # fmt: skip

        precision_df = _frame(precision, ["rule", "alerts", "labelled", "labelled_fraud", "precision", "fraud_caught",
                                          "fraud_labelled", "recall", "confirmed_fraud", "false_positive", "open",
                                          "triage_precision"])
        self.history_area.objects = [
            pn.pane.Markdown(
                f"Last {self.history_days} days"
                + (f", bank {period.bank}" if period.bank else ", all banks")
                + ". Rule precision and recall are measured against the ground-truth labels (fraud-labels), per "
                "flagged transaction: precision = labelled fraud / labelled, recall = fraud caught / all "
                "fraud-labelled transactions; triage precision counts the analysts' decisions, open alerts "
                "neither way.",
                styles=MUTED,
            ),
            pn.Row(pn.pane.Bokeh(daily_volume_figure(volumes), sizing_mode="stretch_width"),
                   pn.pane.Bokeh(alert_rate_figure(rates, HISTORY_DIMENSIONS[self.history_dimension]),
                                 sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(rule_hits_figure(hits), sizing_mode="stretch_width"),
                   table(precision, precision_df.columns, "Rule precision and recall (against labels)",
                         formatters={c: NumberFormatter(format="0.0%")
                                     for c in ("precision", "recall", "triage_precision")}),
                   sizing_mode="stretch_width"),
            pn.Row(table(merchants, risk_cols, f"Riskiest merchants (≥ {self.min_volume} transactions)",
                         titles={"key": "merchant"}, formatters=percent),
                   table(terminals, risk_cols, f"Riskiest terminals (≥ {self.min_volume} transactions)",
                         titles={"key": "terminal"}, formatters=percent), sizing_mode="stretch_width"),
            pn.pane.Bokeh(alert_map_figure(spots), sizing_mode="stretch_width"),
        ]  # fmt: skip


def create_app() -> FraudDashboard:
    """One dashboard for the current session, configured from the environment."""
    from dashboards.config import DashboardSettings
    from rtfd.config import Settings

    settings, dash = Settings(), DashboardSettings()
    return FraudDashboard(dsn=dash.dsn(settings), poll_ms=dash.poll_ms, feed_window=dash.feed_window)


if pn.state.served:
    pn.extension("tabulator")
    create_app().servable(title="rtfd fraud dashboard")
