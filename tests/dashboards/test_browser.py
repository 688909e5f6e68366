"""The served dashboard in real headless Chromium (Playwright, the system's /usr/bin/chromium), against the
stack's PostgreSQL through the rtfd_dashboard role: offline, live, triage, login.

Screenshots go to test-artifacts/ (git-ignored) for a human look.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from dashboards.config import hash_password
from dashboards.role import dashboard_dsn, enable_login
from services.alerts import store
from tests.dashboards.seed import insert_alerts, insert_transaction, make_alert, new_bank

pytestmark = pytest.mark.stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM = os.environ.get("RTFD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def role_dsn(stack) -> str:
    password = secrets.token_urlsafe(16)
    enable_login(stack.postgres_dsn, password)
    return dashboard_dsn(stack.postgres_dsn, password)


@pytest.fixture(scope="module")
def start_dashboard(stack, role_dsn, tmp_path_factory) -> Callable:
    """Start `python -m dashboards` on a free port with extra RTFD_DASHBOARD_* settings; stopped at the end."""
    started: list[subprocess.Popen] = []

    @contextmanager
    def start(**dashboard_env: str) -> Iterator[str]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTFD_DASHBOARD_")}  # only what we set
        env.update({
            "RTFD_STATE_DIR": str(stack.state_dir), "RTFD_PORT_OFFSET": str(stack.port_offset),
            "RTFD_DASHBOARD_PORT": str(port), "RTFD_DASHBOARD_PG_DSN": role_dsn,
            "RTFD_DASHBOARD_POLL_MS": "500", "RTFD_DASHBOARD_COOKIE_SECRET": secrets.token_hex(16),
        })  # fmt: skip
        if stack.pg_dsn is not None:
            env["RTFD_PG_DSN"] = stack.pg_dsn.get_secret_value()
        env.update({f"RTFD_DASHBOARD_{k.upper()}": v for k, v in dashboard_env.items()})
        log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "dashboards"], cwd=PROJECT_ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"dashboard died:\n{log.read_text()}"
                try:
                    if httpx.get(f"{url}/liveness", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"dashboard not up after 60 s:\n{log.read_text()}"
                time.sleep(0.3)
            yield url
        finally:
            stop(proc)
            print(log.read_text()[-3000:])  # shown when the test fails

    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    yield start
    for proc in started:
        stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page with everything it asked for and every error it met."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1600, "height": 1000})
        self.page = self.context.new_page()
        self.urls: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.on("websocket", lambda ws: self.urls.append(ws.url))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def remote(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).scheme not in ("data", "blob")
                and urlsplit(u).hostname not in LOCAL_HOSTS]  # fmt: skip

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=True)

    def close(self) -> None:
        self.context.close()


def wait_for(check: Callable[[], object], timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_live_feed_grows_and_triage_writes_to_postgres_offline(stack, start_dashboard, browser):
    bank = new_bank()
    with store.connect(stack.postgres_dsn) as conn, start_dashboard(dev="1") as url:
        now = datetime.now(UTC)
        before = [make_alert(insert_transaction(conn, bank, now, merchant_id=f"{bank}-m{i}"), severity="CRITICAL")
                  for i in range(2)]  # fmt: skip
        insert_alerts(conn, before)
        watched = Watched(browser)
        try:
            page = watched.page
            navigations: list[str] = []
            page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
            page.goto(url + "/")
            for a in before:
                page.get_by_text(a.alert_id, exact=True).wait_for(timeout=30_000)
            watched.shot("dashboard-live.png")

            # alerts stored now show up without a reload
            after = [make_alert(insert_transaction(conn, bank, datetime.now(UTC)), rules=("velocity", "geo"))
                     for _ in range(3)]  # fmt: skip
            insert_alerts(conn, after)
            for a in after:
                page.get_by_text(a.alert_id, exact=True).wait_for(timeout=10_000)
            assert len(navigations) == 1, navigations

            # triage: select the alert, see its transaction and card history, confirm it as fraud
            target = after[-1]
            page.get_by_text(target.alert_id, exact=True).click()
            page.get_by_text(target.transaction_id, exact=True).first.wait_for(timeout=10_000)
            page.get_by_text("Card history (last 20)").wait_for()
            page.get_by_placeholder("why").fill("customer confirmed the card was stolen")
            page.get_by_label("Assignee").fill("ana")
            page.keyboard.press("Tab")
            page.wait_for_timeout(500)
            page.get_by_role("button", name="Confirmed fraud").click()
            row = wait_for(
                lambda: (r := store.get_alert(conn, target.alert_id))["status"] == "confirmed_fraud" and r,
                what="the alert to be confirmed in PostgreSQL",
            )
            assert (row["assignee"], row["note"]) == ("ana", "customer confirmed the card was stolen")
            page.get_by_text("saved: confirmed fraud").wait_for(timeout=10_000)
            watched.shot("dashboard-triage.png")

            page.get_by_text("History", exact=True).click()
            page.get_by_text("Rule precision and recall (against labels)").wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # let the plots render before the picture
            watched.shot("dashboard-history.png")

            assert watched.remote() == [], f"requests left 127.0.0.1: {watched.remote()}"
            assert watched.failed == [], watched.failed
            assert watched.errors == [], watched.errors
        finally:
            watched.close()


def test_login_is_required_outside_dev_mode(start_dashboard, browser):
    password = secrets.token_urlsafe(12)
    with start_dashboard(password_hash=hash_password(password, iterations=1000)) as url:
        plain = httpx.get(url + "/", follow_redirects=False)
        assert plain.status_code in (302, 303) and "login" in plain.headers["location"]

        watched = Watched(browser)
        try:
            page = watched.page
            page.goto(url + "/")
            assert urlsplit(page.url).path == "/login"
            page.fill("#username", "ana")
            page.fill("#password", password + "-wrong")
            page.click("#login")
            page.locator("#error").wait_for()
            assert urlsplit(page.url).path == "/login"
            watched.shot("dashboard-login-refused.png")

            page.fill("#username", "ana")
            page.fill("#password", password)
            page.click("#login")
            page.get_by_text("rtfd · card fraud: live alerts and triage").wait_for(timeout=30_000)
            page.get_by_text("sign out").wait_for()
            assert watched.remote() == [], watched.remote()
            assert watched.errors == [], watched.errors
        finally:
            watched.close()
