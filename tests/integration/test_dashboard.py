"""The admin endpoint's web dashboard in a real headless Chromium (`browser.py`: Debian's
`chromium` and `chromium-driver`, driven with Selenium): it logs in with the administrator set
as an operator would (AdminUserID in the configuration, `--set-admin-password`), shows the
connections of real paho clients, and closes one with its button, which the client sees; it
shows nothing without credentials and refuses wrong ones; a ConfigurationPolicy that grants
Monitor only lets the page show figures but not close a connection.

Each test saves a screenshot of the page under results/tmp/dashboard/ and prints its path.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from broker import REPO, free_port
from browser import PAGE_TIMEOUT_S, Browser, Dashboard
from helpers import V5, V311, Client, holds_for, wait_for
from test_admin_api import set_password

pytestmark = pytest.mark.ironsight_only(reason="ironsight's admin endpoint")

ADMIN_USER = "dash-admin"
ADMIN_PASSWORD = "dashboard pass phrase"
CLIENTS = 5
# Markup, and a pattern to the close call (a `*` and a comma): shown as text, not closable.
ODD_CLIENT_ID = "<b>dash*,odd</b>"
BASIC = "Basic " + base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
SCREENSHOTS = REPO / "results" / "tmp" / "dashboard"
# The page polls once a second: a figure shows within a few polls.
SHOWN_WITHIN_S = 10
# The reason code an administrative close gives an MQTT 5 client.
ADMINISTRATIVE_ACTION = 0x98


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium") / "chromedriver.log")
    try:
        b.start()
        yield b
    finally:
        b.close()


class Site:
    """A broker with an admin endpoint whose administrator is ADMIN_USER, its clients, and the
    dashboard open in the browser."""

    def __init__(self, start_broker, browser: Browser, admin_endpoint: dict | None = None,
                 objects: dict | None = None):
        self.admin_port = free_port()
        self.broker = start_broker(objects={
            "AdminEndpoint": {"Port": self.admin_port, "Interface": "127.0.0.1",
                              **(admin_endpoint or {})},
            "AdminUserID": ADMIN_USER, **(objects or {})})
        self.broker.wait_log("admin endpoint listening")
        set_password(self.broker.config_path, ADMIN_PASSWORD, ADMIN_USER)
        self.url = f"http://127.0.0.1:{self.admin_port}"
        self.clients: list[Client] = []
        browser.console()  # what earlier tests left in the console
        self.browser = browser
        self.page = Dashboard(browser, self.url)

    def connect(self, n: int) -> list[Client]:
        for i in range(n):
            c = Client(self.broker, V5 if i % 2 == 0 else V311, f"dash-{i}")
            self.clients.append(c)
            c.connect()
        return list(self.clients)

    def get(self, path: str, authorization: str | None = None) -> tuple[int, dict, bytes]:
        """(status, headers by lower-case name, body) of a GET made outside the browser."""
        request = urllib.request.Request(self.url + path)
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        return status, {k.lower(): v for k, v in headers.items()}, body

    def screenshot(self, name: str) -> Path:
        path = self.page.screenshot(SCREENSHOTS / f"{name}.png")
        print(f"dashboard screenshot: {path}")
        return path

    def console_problems(self, refused: tuple[int, ...] = ()) -> list[str]:
        """Console messages that mean the page broke: errors, and Content-Security-Policy
        violations (which Chromium logs as errors); except the API's refusals with a status in
        `refused`, which Chromium logs as failed loads and the test expects."""
        expected = tuple(f"status of {status} " for status in refused)
        return [m["message"] for m in self.browser.console()
                if m["level"] == "SEVERE" and not any(e in m["message"] for e in expected)]

    def close(self) -> None:
        for c in self.clients:
            c.close()


@pytest.fixture
def site(start_broker, browser):
    created: list[Site] = []

    def make(**kw) -> Site:
        s = Site(start_broker, browser, **kw)
        created.append(s)
        return s

    yield make
    for s in created:
        s.close()


def session_storage(page: Dashboard) -> dict:
    return page.driver.execute_script(
        "return Object.fromEntries(Object.entries(sessionStorage))")


def close_button_of(page: Dashboard, client_id: str):
    return wait_for(lambda: page.close_button(client_id), SHOWN_WITHIN_S,
                    message=f"{client_id}'s Close button")


def confirm(page: Dashboard) -> str:
    """Accepts the page's confirmation dialog; returns its text."""
    alert = wait_for(lambda: _alert(page), 5, message="the confirmation dialog")
    text = alert.text
    alert.accept()
    return text


def _alert(page: Dashboard):
    try:
        return page.driver.switch_to.alert
    except NoAlertPresentException:
        return None


# --------------------------------------------------------------------------------------------


def test_the_dashboard_counts_the_clients_and_closes_one(site, request):
    """Proves the dashboard, logged in as the configured AdminUserID, shows as many
    connections as the test connected paho clients, lists each of them, the endpoint, the
    shards, a subscription with its buffered messages and the configured policies; that a
    client id made of markup is shown as text, and one the API would read as a pattern (`*`,
    `,`) gets no Close button to press; that Close disconnects exactly its client (told
    Administrative action), after which the count shown drops by one; and that the page ran
    without a script error or a Content-Security-Policy violation."""
    s = site()
    clients = s.connect(CLIENTS - 1)
    odd = Client(s.broker, V311, ODD_CLIENT_ID)
    s.clients.append(odd)
    odd.connect()
    clients.append(odd)
    # A persistent session with a subscription and messages queued for it while it is away.
    parked = Client(s.broker, V5, "dash-parked", clean=False, session_expiry=600)
    parked.connect()
    assert parked.subscribe("dash/queue", qos=1) == [1]
    parked.disconnect()
    for i in range(3):
        assert clients[1].publish("dash/queue", f"m{i}", qos=1) == 0

    s.page.open()
    s.page.log_in(ADMIN_USER, ADMIN_PASSWORD)
    s.page.wait_logged_in()
    wait_for(lambda: s.page.connections() == str(CLIENTS), SHOWN_WITHIN_S, interval=0.1,
             message=lambda: f"{CLIENTS} connections shown (shown: {s.page.connections()!r})")
    ids = {c.client_id for c in clients}
    wait_for(lambda: set(s.page.connection_rows()) == ids, SHOWN_WITHIN_S, interval=0.1,
             message=lambda: f"rows for {ids} (have {set(s.page.connection_rows())})")
    assert s.page.text("who") == ADMIN_USER
    wait_for(lambda: "dash/queue" in s.page.text("top-subscriptions")
             and "dash-parked" in s.page.text("top-subscriptions"), SHOWN_WITHIN_S,
             interval=0.1, message="the parked session's subscription")
    assert "DemoEndpoint" in s.page.text("endpoints")
    assert "DemoTopicPolicy" in s.page.text("policies")
    assert "DemoConnectionPolicy" in s.page.text("configured-endpoints")
    status, _, body = s.get("/ima/v1/service/status", authorization=BASIC)
    assert status == 200
    shards = s.page.driver.execute_script(
        "return Array.from(document.querySelectorAll('#shards tbody tr'),"
        " (row) => row.cells[0].textContent)")
    assert shards == [str(n) for n in range(json.loads(body)["Server"]["Shards"])]
    assert s.page.text("memory").endswith("iB") or s.page.text("memory").endswith(" B")
    assert session_storage(s.page)["ironsight.authorization"].startswith("Basic ")
    text, elements = s.page.connection_rows()[ODD_CLIENT_ID][0]
    assert text == ODD_CLIENT_ID and elements == 0
    assert not close_button_of(s.page, ODD_CLIENT_ID).is_enabled()
    s.screenshot(request.node.name)

    target, bystanders = clients[0], clients[1:]
    assert target.proto == V5
    close_button_of(s.page, target.client_id).click()
    assert target.client_id in confirm(s.page)
    assert target.disconnected.wait(5), "the client was not disconnected"
    assert target.disconnect_reason == ADMINISTRATIVE_ACTION
    wait_for(lambda: s.page.connections() == str(CLIENTS - 1), SHOWN_WITHIN_S, interval=0.1,
             message=lambda: f"{CLIENTS - 1} connections shown (shown: {s.page.connections()!r})")
    assert "1 connection(s) closed" in s.page.text("action-message")
    wait_for(lambda: target.client_id not in s.page.connection_rows(), SHOWN_WITHIN_S,
             interval=0.1, message="the closed connection's row gone")
    assert all(c.mqtt.is_connected() for c in bystanders)
    assert s.console_problems() == []


def test_without_credentials_the_page_shows_nothing(site, request):
    """Proves that without credentials the page is a login form and nothing else: no figure,
    no row, nothing in sessionStorage, and a call from the page without credentials is refused
    (401) without the browser asking for any; that the page's files carry a
    Content-Security-Policy without 'unsafe-' anything, nosniff and no-framing headers, and
    that the API's answers are not to be stored."""
    s = site()
    clients = s.connect(CLIENTS)
    for path in ["/dashboard/", "/dashboard/dashboard.js", "/dashboard/charts.js",
                 "/dashboard/dashboard.css", "/dashboard/icon.svg"]:
        status, headers, body = s.get(path)
        assert status == 200, path
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy, policy
        assert "unsafe" not in policy and "frame-ancestors 'none'" in policy, policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-cache"
        assert not any(c.client_id.encode() in body for c in clients)
    status, headers, _ = s.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")  # redirected
    status, headers, body = s.get("/ima/v1/monitor/Server")
    assert status == 401 and json.loads(body)["Code"] == "CWLNA8003"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"

    s.page.open()
    assert s.page.shown("login") and not s.page.shown("dashboard")
    assert holds_for(lambda: s.page.connections() == "" and not s.page.connection_rows(), 2.5)
    assert s.page.text("server") == ""
    assert s.page.driver.find_elements(By.CSS_SELECTOR, "#dashboard tbody tr") == []
    assert session_storage(s.page) == {}
    answer = s.page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/ima/v1/monitor/Connection", {credentials: "omit"})
          .then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));
    """)
    assert answer[0] == 401, answer
    assert not any(c.client_id in answer[1] for c in clients)
    s.screenshot(request.node.name)
    assert s.console_problems(refused=(401,)) == []


def test_a_wrong_password_is_refused(site, request):
    """Proves that a wrong password or a wrong user is refused with the API's message and
    shows and keeps nothing; that the right password then works; and that Log out forgets the
    credentials and everything shown, also across a reload."""
    s = site()
    s.connect(2)
    s.page.open()
    for user, password in [(ADMIN_USER, "not the password"), ("admin", ADMIN_PASSWORD)]:
        # The same refusal twice: the first one's text is cleared, not to be taken for the second.
        s.page.driver.execute_script("document.getElementById('login-error').textContent = ''")
        s.page.log_in(user, password)
        wait_for(lambda: s.page.text("login-error") == "wrong user or password", PAGE_TIMEOUT_S,
                 interval=0.1, message=lambda: f"a refusal (shown: {s.page.text('login-error')!r})")
        assert not s.page.shown("dashboard") and s.page.connections() == ""
        assert session_storage(s.page) == {}
        assert s.page.find("#password").get_attribute("value") == ""
    s.screenshot(request.node.name)

    s.page.log_in(ADMIN_USER, ADMIN_PASSWORD)
    s.page.wait_logged_in()
    wait_for(lambda: s.page.connections() == "2", SHOWN_WITHIN_S, interval=0.1,
             message="2 connections shown")
    s.page.find("#logout").click()
    assert s.page.shown("login") and not s.page.shown("dashboard")
    assert s.page.connections() == "" and not s.page.connection_rows()
    assert session_storage(s.page) == {}
    s.page.open()
    assert holds_for(lambda: s.page.shown("login") and s.page.connections() == "", 1.5)
    assert s.console_problems(refused=(401,)) == []


def test_monitor_only_sees_figures_but_cannot_close(site, request):
    """Proves that an administrator whose ConfigurationPolicy grants Monitor only sees the
    figures and the connections, is told the configuration is not shown (no View), and that
    the Close button's request is refused (no Manage), shown on the page, and leaves the
    client connected."""
    s = site(admin_endpoint={"ConfigurationPolicies": "Watch"},
             objects={"ConfigurationPolicy": {
                 "Watch": {"UserID": ADMIN_USER, "ActionList": "Monitor"}}})
    clients = s.connect(2)
    s.page.open()
    s.page.log_in(ADMIN_USER, ADMIN_PASSWORD)
    s.page.wait_logged_in()
    wait_for(lambda: s.page.connections() == "2", SHOWN_WITHIN_S, interval=0.1,
             message="2 connections shown")
    wait_for(lambda: "grants View" in s.page.text("configuration-error"), SHOWN_WITHIN_S,
             interval=0.1, message="the configuration's refusal")
    assert "DemoTopicPolicy" not in s.page.text("policies")

    close_button_of(s.page, clients[0].client_id).click()
    confirm(s.page)
    wait_for(lambda: "grants Manage" in s.page.text("action-message"), SHOWN_WITHIN_S,
             interval=0.1,
             message=lambda: f"the refusal (shown: {s.page.text('action-message')!r})")
    assert "was not closed" in s.page.text("action-message")
    assert holds_for(lambda: clients[0].mqtt.is_connected(), 1.0)
    assert s.page.connections() == "2"
    s.screenshot(request.node.name)
    assert s.console_problems(refused=(403,)) == []
