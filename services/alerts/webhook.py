"""Optional webhook: POST each new alert as JSON to RTFD_ALERT_WEBHOOK_URL, from a background thread.

`alert_notifications` is an outbox: the consumer records a pending notification in the same transaction as
the alert, then hands the alert to this thread's bounded queue without waiting (a full queue only defers the
first attempt). Each attempt is booked in the table; a failed one is due again after an exponential backoff,
and a sweep every few seconds retries what is due, including leftovers of an earlier run. Delivery is
at-least-once: the receiver dedupes on the alert_id (also sent as the X-RTFD-Alert-Id header).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import httpx
import psycopg

from services.alerts import store
from services.alerts.alert import Alert
from services.alerts.config import AlertSettings

log = logging.getLogger(__name__)


@dataclass
class WebhookStats:
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    deferred: int = 0  # queue full: the sweep sends these later


class WebhookNotifier:
    def __init__(self, url: str, dsn: str, *, timeout: float = 5.0, max_attempts: int = 8, backoff: float = 1.0,
                 max_backoff: float = 300.0, queue_size: int = 1000, sweep_interval: float = 2.0,
                 first_attempt_grace: float = 30.0):
        self.url, self.dsn = url, dsn
        self.timeout, self.max_attempts = timeout, max_attempts
        self.backoff, self.max_backoff, self.sweep_interval = backoff, max_backoff, sweep_interval
        # a new alert's notification is left to the queue this long before the sweep may send it too
        self.first_attempt_grace = first_attempt_grace
        self.stats = WebhookStats()
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._conn: psycopg.Connection | None = None
        self._db_warned_at = 0.0

    @classmethod
    def from_settings(cls, settings: AlertSettings, dsn: str) -> WebhookNotifier | None:
        if not settings.webhook_url:
            return None
        return cls(settings.webhook_url, dsn, timeout=settings.alert_webhook_timeout,
                   max_attempts=settings.alert_webhook_max_attempts, backoff=settings.alert_webhook_backoff,
                   max_backoff=settings.alert_webhook_max_backoff, queue_size=settings.alert_webhook_queue_size)

    # --- the consumer's side --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, alerts: list[Alert]) -> None:
        """Queue first attempts without ever blocking; what does not fit waits in the outbox for the sweep."""
        for alert in alerts:
            try:
                self._queue.put_nowait(alert)
            except queue.Full:
                self.stats.deferred += 1

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the thread -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, headers={"User-Agent": "rtfd-alert-consumer"}) as client:
            next_sweep = 0.0  # at once: notifications left pending by an earlier run
            while not self._stop.is_set():
                if time.monotonic() >= next_sweep:
                    self._sweep(client)
                    next_sweep = time.monotonic() + self.sweep_interval
                try:
                    alert = self._queue.get(timeout=max(0.05, min(1.0, next_sweep - time.monotonic())))
                except queue.Empty:
                    continue
                self._attempt(client, alert)
        if self._conn is not None:
            self._conn.close()

    def _sweep(self, client: httpx.Client) -> None:
        try:
            due = store.due_notifications(self._db(), limit=100)
        except psycopg.Error as exc:
            self._db_problem(exc)
            return
        for alert in due:
            if self._stop.is_set():
                return
            self._attempt(client, alert)

    def _attempt(self, client: httpx.Client, alert: Alert) -> None:
        try:
            response = client.post(self.url, json=alert.to_json(), headers={"X-RTFD-Alert-Id": alert.alert_id})
            error = None if response.is_success else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.stats.delivered += 1
        else:
            self.stats.failed_attempts += 1
        try:
            attempts, retry_in = store.record_attempt(self._db(), alert.alert_id, error, self.max_attempts,
                                                      self.backoff, self.max_backoff)
        except psycopg.Error as exc:
            # unbooked: a delivered alert may be sent again by a later sweep (at-least-once), a failed one
            # keeps its earlier due time
            self._db_problem(exc)
            return
        if error is not None:
            self.stats.given_up += retry_in is None
            # a down endpoint fails every alert: only giving up is worth a warning
            log.log(logging.WARNING if retry_in is None else logging.INFO,
                    "webhook for alert %s failed (attempt %d/%d): %s%s", alert.alert_id, attempts, self.max_attempts,
                    error, "; giving up" if retry_in is None else f"; retry in {retry_in:.1f}s")

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = store.connect(self.dsn)
        return self._conn

    def _db_problem(self, exc: psycopg.Error) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if time.monotonic() - self._db_warned_at > 30:
            self._db_warned_at = time.monotonic()
            log.warning("webhook bookkeeping cannot reach PostgreSQL: %s", str(exc).strip().splitlines()[0])
