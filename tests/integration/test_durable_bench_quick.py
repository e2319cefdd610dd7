"""The durable store's benchmark script (tests/bench/durable.py) at a tiny size: its machinery
runs end to end against the real brokers and what it reports is consistent. Speed is never
asserted; what could go wrong is: a broker that does not start with its store, a durable run
that loses or duplicates messages, a sync counter that counts nothing (or counts syncs where
there are none), a recovery that does not bring back exactly the sessions and messages queued.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from broker import IRONSIGHT_BIN, REPO

pytestmark = pytest.mark.ironsight_only(reason="ironsight's durable store")

SESSIONS, QUEUED = 300, 3
BROKERS = ["ironsight-memory", "ironsight-store", "mosquitto"]
#: The script's first `cargo run` of the disk_sync example may have to build it (about a
#: minute here); the runs themselves take about twenty seconds.
SCRIPT_TIMEOUT_S = 280


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    """One quick run of the script (p2p, 64 B, every broker; 300 sessions with 3 messages
    each): its results.json and results.md."""
    tmp = tmp_path_factory.mktemp("durable-bench")
    out = tmp / "out"
    command = [sys.executable, str(REPO / "tests/bench/durable.py"), "--quick", "--no-build",
               "--scenarios", "p2p", "--payloads", "64", "--sessions", str(SESSIONS),
               "--queued", str(QUEUED), "--out", str(out), "--data-root", str(tmp / "data"),
               "--ironsight", IRONSIGHT_BIN]
    # Its own process group: on a timeout, the brokers it started go with it.
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"durable.py did not end within {SCRIPT_TIMEOUT_S}s: {stderr[-3000:]}")
    assert proc.returncode == 0, f"durable.py failed: {stderr[-3000:]}"
    assert "results in" in stderr, stderr[-3000:]
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def runs(results: dict):
    """(broker, mode, run) of every durable QoS 1 run."""
    [entry] = results["durable_qos1"]
    assert (entry["scenario"], entry["payload"]) == ("p2p", 64)
    assert list(entry["brokers"]) == BROKERS
    for broker, by_mode in entry["brokers"].items():
        for mode in ("max", "paced"):
            yield broker, mode, by_mode[mode]


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_every_durable_run_delivers_what_was_sent(quick_run):
    """Proves each broker's QoS 1 runs (persistent sessions; ironsight's store on, off, and
    Mosquitto with persistence) delivered every message sent in the window exactly once, and
    that every one of them was acknowledged and timed."""
    results, _ = quick_run
    for broker, mode, run in runs(results):
        where = f"{broker} {mode}: {run}"
        assert "error" not in run, where
        assert run["expected"] > 0, where
        assert run["received"] == run["expected"], where
        assert (run["lost"], run["duplicates"], run["stale"]) == (0, 0, 0), where
        assert run["errors"] == [], where
        assert run["ack_latency_us"]["count"] == run["published"], where
        assert run["ack_latency_us"]["p50"] > 0, where


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_the_disk_is_measured_beside_every_durable_run(quick_run):
    """Proves the disk's own sync figures are in the results, overall and beside each run of
    ironsight with its store (and only there), and the targets are computed from them."""
    results, markdown = quick_run
    disk = results["disk"]
    assert disk["fdatasync_median_ms"] > 0 and disk["syncs_per_s"] > 0, disk
    assert disk["fdatasync_p99_ms"] >= disk["fdatasync_median_ms"], disk
    assert 0 < disk["overwrite_median_ms"] <= disk["overwrite_p99_ms"], disk
    assert disk["filesystem"] != "unknown", disk
    for broker, mode, run in runs(results):
        assert ("disk" in run) == (broker == "ironsight-store"), f"{broker} {mode}: {run}"
    targets = results["durable_qos1"][0]["targets"]
    paced = results["durable_qos1"][0]["brokers"]["ironsight-store"]["paced"]
    assert targets["ack_p99_paced_ms"]["target"] == round(
        2 * paced["disk"]["fdatasync_median_ms"], 2), targets
    assert targets["ack_p99_added_ms"]["target"] == round(
        2 * paced["disk"]["overwrite_p99_ms"], 2), targets
    # The disk alone doing the journal's group commit beside the paced run: every record of
    # the window's length at the paced rate made durable, gathered into no more writes.
    alone = paced["disk"]["group_commit"]
    assert alone["records"] == round(results["paced_rate"] * alone["seconds"]), alone
    assert 0 < alone["writes"] <= alone["records"], alone
    assert 0 < alone["p50_ms"] <= alone["p99_ms"], alone
    assert targets["ack_p99_added_vs_disk_alone_ms"]["target"] == alone["p99_ms"], targets
    assert f"in {alone['writes']:,} writes" in markdown
    # The same group commit beside an extra paced run of the broker without its store, for
    # that run's warm-up and window, which delivered what was sent.
    loaded_run = results["durable_qos1"][0]["brokers"]["ironsight-memory"]["paced_beside_disk"]
    assert loaded_run["received"] == loaded_run["expected"] > 0, loaded_run
    loaded = loaded_run["disk_beside"]
    assert loaded["seconds"] > alone["seconds"], (loaded, alone)
    assert loaded["records"] == round(results["paced_rate"] * loaded["seconds"]), loaded
    assert 0 < loaded["writes"] <= loaded["records"], loaded
    assert 0 < loaded["p50_ms"] <= loaded["p99_ms"], loaded
    assert targets["ack_p99_added_vs_disk_under_load_ms"]["target"] == loaded["p99_ms"], targets
    assert f"p99 {loaded['p99_ms']} ms ({loaded['records']:,} records in" in markdown
    steps = results["durable_qos1"][0]["brokers"]["ironsight-store"]["steps"]
    assert steps and all("group_commit" not in step["disk"] for step in steps), steps
    assert "rate_share_of_memory" in targets, targets
    assert f"median {disk['fdatasync_median_ms']} ms" in markdown
    assert "does **not** acknowledge after a sync" in markdown


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_syncs_are_counted_where_there_are_some(quick_run):
    """Proves the sync counter sees ironsight's journal syncs (O_DSYNC writes) with the store
    on, none with it off, and none from Mosquitto during a run (it only writes its snapshot
    every autosave_interval). Where it cannot count here (no perf, or a data directory not on
    ext4), the results say why instead."""
    results, _ = quick_run
    if results["sync_counter"] is not None:
        assert all("syncs" not in run for _, _, run in runs(results))
        assert "perf" in results["sync_counter"] or "ext4" in results["sync_counter"]
        return
    for broker, mode, run in runs(results):
        where = f"{broker} {mode}: {run}"
        counts = run["syncs"]
        assert counts is not None, where
        if broker == "ironsight-store":
            assert counts["ext4_sync_file"] > 0, where
            assert run["messages_per_sync"] > 0, where
        else:
            assert sum(counts.values()) == 0, where


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 20)
def test_recovery_brings_back_exactly_what_was_queued(quick_run):
    """Proves the recovery run's kill -9 and restart recovered exactly the sessions and the
    messages queued for them, and that resumed sessions find their own messages, no more."""
    results, markdown = quick_run
    r = results["recovery"]
    assert "error" not in r, r
    assert r["recovered"]["sessions"] == SESSIONS, r
    assert r["recovered"]["messages"] == SESSIONS * QUEUED, r
    assert r["recovered"]["retained"] == 0, r
    assert r["ready_wall_s"] > 0 and r["rss_after_recovery_kb"] > 0, r
    assert r["data_bytes_before_crash"] > 0 and r["data_bytes_after_restart"] > 0, r
    assert len(r["resumed"]) == 3, r
    for client_id, resumed in r["resumed"].items():
        assert resumed == {"messages": QUEUED, "all_on_its_topic": True}, (client_id, r)
    assert f"{SESSIONS:,} sessions, {SESSIONS * QUEUED:,} messages" in markdown
