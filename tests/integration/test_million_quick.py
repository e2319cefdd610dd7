"""tests/bench/million.py at a tiny size: the million-connection run's machinery (the guest's
bench mode, the console's samples and results, the summary) proved on 2,000 connections, in
about a minute of emulation. The million itself is a separate run of the script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONNECTIONS = 2000
#: Building the image (a few seconds; the kernel download the first time) and booting it twice
#: (a guest per phase) at 300 connections a second, emulated: about 80 s.
SCRIPT_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("million")
    done = subprocess.run([sys.executable, str(REPO / "tests/bench/million.py"),
                           "--connections", str(CONNECTIONS), "--rate", "300",
                           "--memory-gib", "2", "--deadline-s", "300", "--out", str(out)],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "results.md").read_text() in done.stdout
    return json.loads((out / "results.json").read_text())


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_every_connection_is_held_and_alive(results):
    """Proves the guest's conn run opened, held and PINGed every connection asked for (the
    check and the teardown paced), that nothing missed its bound, and that the guests ended by
    themselves (not at the deadline)."""
    assert results["stopped_by"] is None, results["summary"]
    conn = results["summary"]["conn"]
    assert conn["opened"] == CONNECTIONS and conn["failed"] == 0, conn
    assert conn["alive"] == conn["alive_checked"] == CONNECTIONS, conn
    assert conn["rate_per_s"] > 0, conn
    assert not conn["errors"], conn


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_memory_per_connection_is_measured_at_the_peak(results):
    """Proves the samples saw every connection at once (both ends' sockets) and give a broker
    memory per connection in a plausible range (the broker keeps well under 4 KiB)."""
    s = results["summary"]
    assert s["peak_connections_from_sockets"] == CONNECTIONS, s
    assert 0 < s["broker_rss_per_connection_b"] < 4096, s
    assert s["kernel_slab_per_connection_b"] > 0, s


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_the_fan_out_reaches_every_subscriber(results):
    """Proves the fan-out run, in a guest of its own, connected every subscriber and delivered
    every message to each, and that its own samples saw all of its connections at once."""
    assert set(results["phases"]) == {"conn", "fanout"}, results["phases"]
    f = results["summary"]["fanout"]
    assert f["clients_connected"] == CONNECTIONS, f
    assert f["expected"] > 0 and f["received"] == f["expected"] and f["lost"] == 0, f
    peak = results["summary"]["fanout_at_peak"]
    assert peak["peak_connections_from_sockets"] == CONNECTIONS, peak
    assert 0 < peak["broker_rss_per_connection_b"] < 4096, peak
