#!/usr/bin/env python3
"""What monitoring costs the message path (issue 11's benchmark): the broker's CPU per
delivered message on QoS 1 fan-out (1 publisher to 200 subscribers, 64-byte payload) at a fixed
100,000 messages/s, watched (`/metrics` scraped every second, and the dashboard open in a
headless Chromium, logged in and polling the API once a second) and not watched, on the same
binary, the same CPUs, alternately (ROUNDS of each, interleaved, so that a neighbour's load on
the shared machine falls on both alike). Chromium runs on the load generator's CPUs, never on
the broker's; between watched runs it shows a blank page. The broker's CPU includes its admin
endpoint's threads, which answer the scrapes and the dashboard.

Needs the Debian packages chromium and chromium-driver and Selenium (tests/run installs them).

Writes results/monitoring-cost/<UTC time>/results.json and prints a table. Usage:
    python3 tests/bench/monitoring_cost.py [ROUNDS]
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import compare  # noqa: E402  (its brokers, CPU split and ironsight-bench runner)
from broker import port_open  # noqa: E402
from browser import Browser, Dashboard  # noqa: E402
from helpers import wait_for  # noqa: E402
from scram_verifier import verifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench-admin"
SCENARIO = ("fanout-qos1", "QoS 1 fan-out, 1 publisher to 200 subscribers, 64-byte payload",
            ["fanout", "--subscribers", "200", "--qos", "1", "--payload", "64",
             "--inflight", "64"], 1000)
FIXED_RATE = 100_000
SCRAPE_EVERY_S = 1.0
# The dashboard's calls are counted from the browser's resource timing entries; room for a
# run's worth (about ten a second).
RESOURCE_ENTRIES_MAX = 100_000


class Monitored(compare.Ironsight):
    """ironsight with an AdminEndpoint; when `browser` is given, watched while it runs: a
    Prometheus-like scraper of its /metrics every second, and its dashboard open in
    `browser`."""

    def __init__(self, name, cpus, workdir, browser: Browser | None):
        super().__init__(name, cpus, workdir)
        self.admin_port = compare.free_port()
        self.browser = browser
        self.scrapes = 0
        self.dashboard_calls = 0
        self.stopping = threading.Event()
        self.scraper: threading.Thread | None = None

    def command(self):
        command = super().command()
        path = self.workdir / "ironsight.json"
        config = json.loads(path.read_text())
        config["AdminEndpoint"] = {"Port": self.admin_port}
        config["AdminUserPassword"] = verifier(PASSWORD.encode(), os.urandom(16))
        path.write_text(json.dumps(config))
        return command

    def start(self):
        super().start()
        self.stopping.clear()
        if self.browser:
            self.scraper = threading.Thread(target=self.scrape_loop, daemon=True)
            self.scraper.start()
            self.open_dashboard()
        return self

    def open_dashboard(self):
        wait_for(lambda: port_open("127.0.0.1", self.admin_port), 10,
                 message="the admin endpoint")
        page = Dashboard(self.browser, f"http://127.0.0.1:{self.admin_port}").open()
        page.driver.execute_script(
            f"performance.setResourceTimingBufferSize({RESOURCE_ENTRIES_MAX})")
        page.log_in("admin", PASSWORD)
        page.wait_logged_in()

    def scrape_loop(self):
        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/metrics",
                                         headers={"Authorization": f"Basic {token}"})
        while not self.stopping.wait(SCRAPE_EVERY_S):
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                self.scrapes += 1
            except OSError:
                pass  # starting or stopping

    def stop(self):
        self.stopping.set()
        if self.scraper:
            self.scraper.join(10)
        if self.browser:
            self.dashboard_calls = self.browser.driver.execute_script(
                "return performance.getEntriesByType('resource')"
                ".filter((e) => e.initiatorType === 'fetch').length")
            self.browser.driver.get("about:blank")
        super().stop()


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    compare.prepare(["ironsight"])
    broker_cpus, tool_cpus = compare.split_cpus()
    when = datetime.datetime.now(datetime.timezone.utc)
    out = ROOT / "results" / "monitoring-cost" / when.strftime("%Y-%m-%dT%H%M")
    out.mkdir(parents=True, exist_ok=True)
    unwatched, watched = "not watched", "/metrics scraped every second, dashboard open"
    results: dict = {"machine": compare.versions(["ironsight"]), "rate": FIXED_RATE,
                     "runs": {unwatched: [], watched: []}}
    with tempfile.TemporaryDirectory(prefix="monitoring-cost-") as tmp, \
            Browser(Path(tmp) / "chromedriver.log", cpus=set(tool_cpus)) as browser:
        for _ in range(rounds):
            for label, watcher in [(unwatched, None), (watched, browser)]:
                workdir = Path(tmp) / ("watched" if watcher else "unwatched")
                workdir.mkdir(exist_ok=True)
                broker = Monitored("ironsight", broker_cpus, workdir, watcher)
                point = compare.cpu_point(SCENARIO, broker, tool_cpus, FIXED_RATE, quick=False)
                point["scrapes"] = broker.scrapes
                point["dashboard_calls"] = broker.dashboard_calls
                results["runs"][label].append(point)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    rows = ["| | CPU per delivered message (median of rounds) | each round | scrapes | "
            "dashboard calls |", "|---|---|---|---|---|"]
    for label, points in results["runs"].items():
        each = [p["us_per_message"] for p in points]
        rows.append(f"| {label} | {statistics.median(each):.2f} µs | "
                    f"{', '.join(f'{x:.2f}' for x in each)} | "
                    f"{sum(p['scrapes'] for p in points)} | "
                    f"{sum(p['dashboard_calls'] for p in points)} |")
    medians = [statistics.median(p["us_per_message"] for p in results["runs"][label])
               for label in (unwatched, watched)]
    rows.append(f"watched costs {100 * (medians[1] / medians[0] - 1):+.1f}% CPU per message "
                "(the issue's bound: at most 3%)")
    print("\n".join(rows))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
