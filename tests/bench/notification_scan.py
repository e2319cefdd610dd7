#!/usr/bin/env python3
"""What a round of disconnected-client notification costs (issue 13's benchmark): SESSIONS
disconnected persistent sessions subscribed under a TopicPolicy with
DisconnectedClientNotification, a tenth of them (FRACTION) with a new QoS 1 message before each
round, a gateway consuming `$SYS/DisconnectedClientNotification`, and meanwhile a QoS 1 fan-out
probe (1 publisher to PROBE_SUBSCRIBERS subscribers, one message every PROBE_PERIOD_MS) whose
latency is compared inside the rounds and outside them.

After one round that finds the rounds' phase, for each of ROUNDS rounds:
1. one QoS 1 message is queued for each of the first FRACTION of the sessions
   (`queued_sessions.queue_messages`), then the probe runs alone for QUIET_S seconds: the
   baseline (and the broker's CPU rate with the probe alone);
2. the round comes (every DisconnClientNotifInterval, 15 s, Amlen's floor); the gateway counts
   its notifications. The round's span is from the first to the last notification arriving,
   its CPU the broker's CPU time (/proc, all threads, 10 ms ticks) over the round less the
   probe's rate. One shard unless --shards says more: the probe then shares the scan's core;
3. probe samples sent within the span (plus 50 ms) are "during the scan", the rest baseline.

Sessions are made by connecting and disconnecting (`queued_sessions.create_sessions`, 3.1.1,
clean session 0), at most 200 connections at once: far below the 20,000 open files here.

Usage (the issue's figures; several minutes on 2 shared CPUs):
    python3 tests/bench/notification_scan.py --sessions 100000
A quick check that it works (what the author ran):
    python3 tests/bench/notification_scan.py --sessions 2000 --rounds 1
Writes results/notification-scan/<UTC time>/results.json and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import queued_sessions  # noqa: E402
from broker import Broker  # noqa: E402
from helpers import V5, Client, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "$SYS/DisconnectedClientNotification"
INTERVAL_S = 15
PROBE_TOPIC = "probe/fanout"
# Creating sessions: connections at once, and the bound on each step.
CONCURRENCY = 200
STEP_TIMEOUT_S = 60


def cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds, all threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / 100.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Probe:
    """QoS 1 fan-out: one publisher, `subscribers` subscribers; every message carries its send
    time, and each delivery's latency is kept with that send time."""

    def __init__(self, broker, subscribers: int, period_ms: float):
        self.period_s = period_ms / 1000
        self.samples: list[tuple[float, float]] = []  # (sent at, latency s)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.subs = []
        for i in range(subscribers):
            c = Client(broker, V5, f"probe-sub-{i}")
            c.mqtt.on_message = self._on_message
            c.connect()
            assert c.subscribe(PROBE_TOPIC, 1) == [1]
            self.subs.append(c)
        self.pub = Client(broker, V5, "probe-pub")
        self.pub.connect()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_message(self, client, userdata, message):
        now = time.time()
        (sent,) = struct.unpack("!d", message.payload[:8])
        with self.lock:
            self.samples.append((sent, now - sent))

    def _run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            # Wall-clock time, as the gateway's arrival times (mosquitto_sub's %U) are.
            self.pub.mqtt.publish(PROBE_TOPIC, struct.pack("!d", time.time()), 1)
            next_at += self.period_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for c in [self.pub, *self.subs]:
            c.close()


class Gateway:
    """The notifications' consumer: mosquitto_sub (C, its own process, so that the probe's
    Python clients do not share a core or a lock with it), printing each arrival's time."""

    def __init__(self, broker):
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-i", "gateway",
             "-q", "1", "-t", TOPIC, "-F", "%U"],
            stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.arrivals.append(float(line))

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


def start_broker(workdir: Path, sessions: int, shards: int) -> Broker:
    policies = {
        # First: the first TopicPolicy that applies to a client sets its session's queue, and
        # the gateway's must hold a round (as many notifications as sessions with news).
        "Gateway": {"Topic": TOPIC, "ClientID": "gateway", "ActionList": "Subscribe",
                    "MaxMessages": max(5000, sessions)},
        "Phones": {"Topic": "s/*", "ClientID": "*", "ActionList": "Publish,Subscribe",
                   "MaxMessages": 10, "DisconnectedClientNotification": True},
        "Probe": {"Topic": "probe/*", "ClientID": "*", "ActionList": "Publish,Subscribe"},
    }
    objects = {"Broker": {"DisconnClientNotifInterval": INTERVAL_S,
                          "MaxSessionsPerCore": max(2_000_000, sessions)},
               "TopicPolicy": policies}
    b = Broker(workdir, endpoint={"TopicPolicies": ",".join(policies)}, objects=objects,
               env={"IRONSIGHT_LOG": "info"}, args=["--shards", str(shards)])
    b.start()
    return b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--fraction", type=float, default=0.10)
    parser.add_argument("--rounds", type=int, default=3)
    # One shard by default: a round's span is then one shard's scan (shards tick apart, up to
    # a second), and the probe shares the core the scan runs on, the worst case for it.
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--probe-subscribers", type=int, default=5)
    parser.add_argument("--probe-period-ms", type=float, default=10.0)
    parser.add_argument("--quiet-s", type=float, default=3.0)
    args = parser.parse_args()
    with_news = int(args.sessions * args.fraction)
    workdir = Path(tempfile.mkdtemp(prefix="notification-scan-"))
    b = start_broker(workdir, args.sessions, args.shards)
    gateway = probe = None
    try:
        t0 = time.monotonic()
        asyncio.run(queued_sessions.create_sessions(b.port, args.sessions, "phone-", "s",
                                                    CONCURRENCY, STEP_TIMEOUT_S))
        print(f"{args.sessions} sessions made in {time.monotonic() - t0:.1f} s", flush=True)
        probe = Probe(b, args.probe_subscribers, args.probe_period_ms)
        gateway = Gateway(b)
        probe.thread.start()
        # Find the rounds' phase: one message, its notification; the next round is then an
        # interval away, room to queue the next batch and measure a quiet baseline first.
        asyncio.run(queued_sessions.queue_messages(b.port, 1, 1, "s", b"x", 1, 1,
                                                   STEP_TIMEOUT_S))
        wait_for(lambda: gateway.count() >= 1, INTERVAL_S + 30, 0.005,
                 message="the first round's notification")
        rounds = []
        windows = []
        for r in range(args.rounds):
            asyncio.run(queued_sessions.queue_messages(b.port, with_news, 1, "s", b"x", 8, 500,
                                                       STEP_TIMEOUT_S))
            quiet_from, cpu_from = time.monotonic(), cpu_s(b.pid)
            quiet_wall = time.time()
            time.sleep(args.quiet_s)
            base_rate = (cpu_s(b.pid) - cpu_from) / (time.monotonic() - quiet_from)
            before, wait_from, cpu_wait = gateway.count(), time.monotonic(), cpu_s(b.pid)
            wait_for(lambda: gateway.count() >= before + with_news, INTERVAL_S + 30, 0.005,
                     message=lambda: f"{with_news} notifications (have "
                                     f"{gateway.count() - before})")
            done, cpu_done = time.monotonic(), cpu_s(b.pid)
            with gateway.lock:
                first, last = gateway.arrivals[before], gateway.arrivals[-1]
            # The broker's CPU over the wait, less what the probe costs at its own rate.
            scan_cpu = (cpu_done - cpu_wait) - base_rate * (done - wait_from)
            windows.append((first - 0.05, last + 0.05, quiet_wall))
            rounds.append({"notifications": gateway.count() - before,
                           "span_ms": round((last - first) * 1000, 1),
                           "cpu_s": round(max(0.0, scan_cpu), 3)})
            print(f"round {r + 1}: {rounds[-1]}", flush=True)
            time.sleep(1.0)
        probe.stop.set()
        with probe.lock:
            samples = list(probe.samples)
        during = [lat for sent, lat in samples if any(a <= sent <= z for a, z, _ in windows)]
        baseline = [lat for sent, lat in samples
                    if any(q <= sent < a for a, _, q in windows)]
        summary = {
            "sessions": args.sessions, "with_news": with_news, "shards": args.shards,
            "rounds": rounds,
            "scan_span_ms_median": statistics.median(r["span_ms"] for r in rounds),
            "scan_cpu_s_median": statistics.median(r["cpu_s"] for r in rounds),
            "probe": {"subscribers": args.probe_subscribers,
                      "period_ms": args.probe_period_ms,
                      "baseline_samples": len(baseline), "during_samples": len(during),
                      "baseline_p99_ms": round(percentile(baseline, 99) * 1000, 2)
                      if baseline else None,
                      "during_p99_ms": round(percentile(during, 99) * 1000, 2)
                      if during else None},
        }
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = ROOT / "results" / "notification-scan" / stamp
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        print(f"written to {out / 'results.json'}")
    finally:
        for client in (gateway, probe):
            if client is not None:
                client.close()
        b.stop()


if __name__ == "__main__":
    main()
