#!/usr/bin/env python3
"""Applying a policy change under load: how long ironsight takes to take up a narrowed
ConnectionPolicy with thousands of connected clients, and that no client it still admits is
dropped or loses a message.

    python3 tests/bench/policy_apply.py [--keep 15000] [--gone 1000] [--fanout 50]
                                        [--hold 20] [--shards N] [--json out.json]

What it does: starts ironsight (target/release) with one endpoint whose ConnectionPolicy admits
every client id; connects --keep clients with ids starting `keep` and --gone clients with ids
starting `gone` (two `ironsight-bench conn` processes, which hold them), and runs a QoS 1
fan-out (one publisher, --fanout subscribers, ids starting `keep`) through the change. When
every connection is established it rewrites the configuration file so that the policy admits
only `keep*` and sends SIGHUP. Then it reads:

- from the broker's log: the time from the SIGHUP line to "configuration applied" (the broker's
  clock: reading and checking the file, building the new generation, every shard taking it up
  on its next 50 ms tick), and the slowest shard's own time judging its connections again;
- from this side: the time from kill(SIGHUP) to that log line;
- from the load tool: `keep` connections lost (must be 0, and each answers its PINGREQ when
  its --hold seconds are over), `gone` connections lost (must be all of them), and the
  fan-out's losses (must be 0: it publishes through the change and --hold seconds beyond).

The broker and each load tool are separate processes: 16,000 sockets fit under a 20,000
open-files limit only so. Exits non-zero when a check fails. Prints one JSON document (and
writes it to --json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IRONSIGHT = REPO / "target/release/ironsight"
BENCH = REPO / "target/release/ironsight-bench"

#: Seconds each phase may take before the run is called failed.
START_TIMEOUT_S = 15
APPLY_TIMEOUT_S = 30
#: Seconds between every connection established and the SIGHUP: every CONNACK out, the
#: fan-out in its measured window.
SETTLE_S = 2


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(port: int, client_ids: str) -> dict:
    return {
        "Endpoint": {"Bench": {
            "Port": port, "Interface": "127.0.0.1", "MessageHub": "Hub",
            "ConnectionPolicies": "Clients", "TopicPolicies": "Topics"}},
        "MessageHub": {"Hub": {}},
        "ConnectionPolicy": {"Clients": {"ClientID": client_ids}},
        "TopicPolicy": {"Topics": {"Topic": "*", "ActionList": "Publish,Subscribe"}},
    }


def write_config(path: Path, port: int, client_ids: str) -> None:
    """Writes the file whole, then renames it over the old one: the broker never reads half."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(config(port, client_ids), indent=2))
    partial.replace(path)


def established(port: int) -> int:
    """Established TCP connections to local port `port`, from /proc/net/tcp (the broker's
    ends: their local address is the port)."""
    count = 0
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split(None, 4)
                if fields[1].endswith(suffix) and fields[3] == "01":
                    count += 1
    return count


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def log_time(line: str) -> datetime.datetime:
    """The timestamp tracing puts first on a line (RFC 3339, UTC)."""
    stamp = line.split()[0]
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def bench_process(args: list[str], port: int) -> subprocess.Popen:
    command = [str(BENCH), *args, "--port", str(port), "--json-only"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bench_result(proc: subprocess.Popen, timeout: float) -> dict:
    stdout, stderr = proc.communicate(timeout=timeout)
    if not stdout.strip():
        raise RuntimeError(f"ironsight-bench gave no result: {stderr[-2000:]}")
    return json.loads(stdout)


def run(ironsight: Path, keep: int, gone: int, fanout: int, hold: float,
        shards: int | None, workdir: Path) -> dict:
    """One measured run; returns the figures and the checks."""
    port = free_port()
    path = workdir / "ironsight.json"
    write_config(path, port, "*")
    broker_log = workdir / "ironsight.log"
    args = [str(ironsight), "--config", str(path)]
    if shards:
        args += ["--shards", str(shards)]
    with open(broker_log, "wb") as out:
        broker = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "IRONSIGHT_LOG": "info"})
    tools: list[subprocess.Popen] = []
    try:
        text = lambda: broker_log.read_text(errors="replace")  # noqa: E731
        wait(lambda: re.search(r"\bready\b", text()) or broker.poll() is not None,
             START_TIMEOUT_S, "the broker to be ready")
        if broker.poll() is not None:
            raise RuntimeError(f"the broker exited: {text()[-2000:]}")
        # Clients connect as fast as they can, and hold `hold` seconds from their last CONNACK:
        # the change comes SETTLE_S seconds after that.
        common = ["--rate", "0", "--mqtt", "3.1.1", "--keepalive", "120", "--source-addrs", "2"]
        tools.append(bench_process(["conn", "-n", str(keep), "--hold", str(hold),
                                    "--client-prefix", "keep", *common], port))
        tools.append(bench_process(["conn", "-n", str(gone), "--hold", str(hold),
                                    "--client-prefix", "gone", *common], port))
        wanted = keep + gone + (fanout + 1 if fanout else 0)
        if fanout:
            tools.append(bench_process([
                "fanout", "--subscribers", str(fanout), "--qos", "1", "--rate", "200",
                "--warmup", "1", "--duration", str(2 * hold), "--client-prefix", "keepfan",
                "--mqtt", "5"], port))
        connect_started = time.monotonic()
        wait(lambda: established(port) >= wanted, 120, f"{wanted} connections")
        connect_s = time.monotonic() - connect_started
        time.sleep(SETTLE_S)
        write_config(path, port, "keep*")
        sent = time.monotonic()
        broker.send_signal(signal.SIGHUP)
        applied = wait(lambda: re.search(r".*configuration applied.*", text()),
                       APPLY_TIMEOUT_S, "the configuration to be applied")
        seen_s = time.monotonic() - sent
        line = applied.group(0)
        hup = re.search(r".*SIGHUP: reading the configuration file.*", text()).group(0)
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        results = [bench_result(tool, 4 * hold + 120) for tool in tools]
    finally:
        for tool in tools:
            if tool.poll() is None:
                tool.kill()
                tool.wait()
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
    kept, dropped = results[0]["connections"], results[1]["connections"]
    figures = {
        "keep": keep, "gone": gone, "fanout_subscribers": fanout,
        "shards": int(fields.get("shards", 0)),
        "connect_s": round(connect_s, 2),
        "broker_sighup_to_applied_ms": round(
            (log_time(line) - log_time(hup)).total_seconds() * 1000, 1),
        "broker_apply_ms": round(float(fields["took_ms"]), 1),
        "slowest_shard_ms": round(float(fields["slowest_shard_ms"]), 1),
        "signal_to_log_line_ms": round(seen_s * 1000, 1),
        "checked": int(fields["checked"]),
        "disconnected": int(fields["disconnected"]),
        "keep_lost": kept["lost"], "keep_opened": kept["opened"], "keep_alive": kept["alive"],
        "gone_lost": dropped["lost"], "gone_opened": dropped["opened"],
    }
    checks = {
        "every keep client connected": kept["opened"] == keep,
        "no keep client dropped": kept["lost"] == 0 and kept["alive"] == keep,
        "every gone client dropped": dropped["lost"] == gone == dropped["opened"],
        "the broker judged every client again": figures["checked"] == wanted,
        "the broker disconnected exactly the gone clients": figures["disconnected"] == gone,
    }
    if fanout:
        f = results[2]
        figures["fanout"] = {k: f[k] for k in ("expected", "received", "lost", "duplicates")}
        checks["no fan-out message lost"] = (f["lost"] == 0 and f["duplicates"] == 0
                                             and f["received"] == f["expected"] > 0)
        checks["no fan-out client dropped"] = f["connections"]["lost"] == 0
    return {"figures": figures, "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=int, default=15000)
    parser.add_argument("--gone", type=int, default=1000)
    parser.add_argument("--fanout", type=int, default=50,
                        help="QoS 1 fan-out subscribers through the change (0: none)")
    parser.add_argument("--hold", type=float, default=20,
                        help="seconds the clients hold their connections once all connected")
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ironsight", type=Path, default=IRONSIGHT,
                        help="the broker binary (default: target/release/ironsight)")
    args = parser.parse_args()
    for binary in (args.ironsight, BENCH):
        if not os.access(binary, os.X_OK):
            log(f"no {binary}: cargo build --release -p ironsight-server -p ironsight-bench")
            return 2
    with tempfile.TemporaryDirectory(prefix="policy-apply-") as tmp:
        result = run(args.ironsight, args.keep, args.gone, args.fanout, args.hold, args.shards,
                     Path(tmp))
    result["machine"] = {
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "load_avg": os.getloadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    failed = [name for name, ok in result["checks"].items() if not ok]
    for name in failed:
        log(f"FAILED: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
