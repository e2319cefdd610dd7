"""A real headless Chromium driven through chromedriver with Selenium, and the admin endpoint's
dashboard as seen in it: for the dashboard's tests (`test_dashboard.py`) and the monitoring
benchmark (`tests/bench/monitoring_cost.py`), which keeps the dashboard open while it measures.

`Browser` starts the Debian package `chromium-driver`'s chromedriver through Selenium's
`Service` (so Selenium Manager never looks for, or downloads, a driver), and chromedriver starts
the `chromium` package's browser, `--headless=new`, with a fresh profile folder. chromedriver's
pid is the Service's, Chromium's are its descendants, read from /proc: `close` quits through
the driver and then stops whatever is left by pid, within STOP_TIMEOUT_S, and removes the
profile. Tests run as root, and Chromium refuses to run as root with its sandbox: hence
`--no-sandbox` (the pages it loads are the broker's own, on loopback).

When the packages are missing this fails saying which to install (tests/run installs them):
a skipped browser test would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from helpers import wait_for

CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER_BIN = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
# A page load, and a script run in the page, give up after this long.
PAGE_TIMEOUT_S = 20
# Quitting the driver and the browser, then what is left killed by pid.
STOP_TIMEOUT_S = 10
WINDOW = (1400, 1600)


def _require(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: install the Debian package {package} "
                           "(tests/run does)")


def _descendants(pid: int) -> list[int]:
    """The pids of `pid`'s descendants now, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name is in parentheses and may hold spaces: the fields follow its ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Browser:
    """Headless Chromium. `cpus`: the CPUs it may run on (the benchmark keeps it off the
    broker's); `log_path`: where chromedriver writes its log."""

    def __init__(self, log_path: Path, cpus: set[int] | None = None):
        self.log_path, self.cpus = log_path, cpus
        self.driver: webdriver.Chrome | None = None
        self.driver_pid: int | None = None
        self.pids: list[int] = []
        self.profile: str | None = None

    def start(self) -> "Browser":
        _require(CHROMIUM_BIN, "chromium")
        _require(CHROMEDRIVER_BIN, "chromium-driver")
        self.profile = tempfile.mkdtemp(prefix="ironsight-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM_BIN
        for arg in ["--headless=new", "--no-sandbox", f"--user-data-dir={self.profile}",
                    f"--window-size={WINDOW[0]},{WINDOW[1]}", "--disable-dev-shm-usage",
                    "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync"]:
            options.add_argument(arg)
        # The console, to find Content-Security-Policy violations and script errors.
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        popen = {}
        if self.cpus is not None:
            cpus = self.cpus
            # Set in chromedriver before it runs; Chromium, its child, inherits it.
            popen["preexec_fn"] = lambda: os.sched_setaffinity(0, cpus)
        service = Service(executable_path=CHROMEDRIVER_BIN, log_output=str(self.log_path),
                          popen_kw=popen)
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        finally:
            if service.process is not None:
                self.driver_pid = service.process.pid
        self.driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        self.driver.set_script_timeout(PAGE_TIMEOUT_S)
        self.pids = _descendants(self.driver_pid)
        assert self.pids, "chromedriver started no browser"
        return self

    def close(self) -> None:
        """Quits the browser and chromedriver, then kills by pid what is still there after
        STOP_TIMEOUT_S (and anything Chromium started since it was started)."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        pids = list(self.pids)
        if self.driver_pid is not None:
            pids += [self.driver_pid] + _descendants(self.driver_pid)
        try:
            if self.driver is not None:
                self.driver.quit()
        except WebDriverException:
            pass  # already gone: the pids below say what is left
        finally:
            self.driver = None
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in pids:
                if _alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if self.profile:
                shutil.rmtree(self.profile, ignore_errors=True)
                self.profile = None

    def console(self) -> list[dict]:
        """The console's messages since the last call."""
        return self.driver.get_log("browser")

    def __enter__(self) -> "Browser":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class Dashboard:
    """The admin endpoint's dashboard in `browser`, at `url` (http://host:port)."""

    def __init__(self, browser: Browser, url: str):
        self.browser, self.url = browser, url
        self.driver = browser.driver

    def open(self) -> "Dashboard":
        self.driver.get(self.url + "/dashboard/")
        WebDriverWait(self.driver, PAGE_TIMEOUT_S).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        return self

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, element_id: str) -> str:
        """An element's text as the page holds it (shown or not)."""
        return self.driver.execute_script(
            "return document.getElementById(arguments[0]).textContent", element_id)

    def shown(self, element_id: str) -> bool:
        return self.driver.find_element(By.ID, element_id).is_displayed()

    def log_in(self, user: str, password: str) -> None:
        for field, value in [("user", user), ("password", password)]:
            element = self.driver.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        self.driver.find_element(By.ID, "login-button").click()

    def wait_logged_in(self, timeout: float = PAGE_TIMEOUT_S) -> None:
        wait_for(lambda: self.shown("dashboard") and self.text("connections") != "", timeout,
                 interval=0.1, message=lambda: "the dashboard's first figures (login error: "
                 f"{self.text('login-error')!r})")

    def connections(self) -> str:
        return self.text("connections")

    def connection_rows(self) -> dict[str, list[str]]:
        """The connection table's rows, by client id: each cell's text and how many elements
        the cell holds. Read in one script: the page rebuilds its tables every second, so an
        element found by one WebDriver call may be gone by the next."""
        return dict(self.driver.execute_script("""
            return Array.from(document.querySelectorAll("#connection-list tbody tr[data-client-id]"),
                              (row) => [row.dataset.clientId,
                                        Array.from(row.cells, (c) => [c.textContent,
                                                                      c.childElementCount])]);
        """))

    def close_button(self, client_id: str):
        """The Close button of `client_id`'s connection (kept by the page across redraws)."""
        return self.driver.execute_script("""
            const row = Array.from(document.querySelectorAll("#connection-list tbody tr"))
              .find((r) => r.dataset.clientId === arguments[0]);
            return row ? row.querySelector("button.close") : null;
        """, client_id)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The whole page: Chromium's headless window is resized to the document's height.
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(WINDOW[0], max(WINDOW[1], height))
        assert self.driver.save_screenshot(str(path)), path
        return path
