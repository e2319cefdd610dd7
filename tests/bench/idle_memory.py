#!/usr/bin/env python3
"""Resident memory per idle MQTT connection: ironsight against Mosquitto, in one run.

For each broker: start it on a free loopback port, read its resident set (VmRSS), open N TCP
connections that each complete an MQTT 3.1.1 CONNECT/CONNACK (keep alive 600 s, clean session, no
subscriptions), wait for the broker to settle, read VmRSS again, and report
(after - before) / N. Then close everything and stop the broker.

    python3 tests/bench/idle_memory.py [--connections 15000] [--settle 8] [--json out.json]

This process holds the N client sockets, so N must stay under its open-file limit (20,000 on the
development machines); the broker holds N more. Prints a Markdown table and, with --json, the
figures with the machine and date they came from.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BATCH = 500          # connections opened before reading their CONNACKs
CONNACK_OK = b"\x20\x02\x00\x00"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def connect_packet(client_id):
    """MQTT 3.1.1 CONNECT: protocol "MQTT", level 4, clean session, keep alive 600 s."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT" + b"\x04" + b"\x02" + (600).to_bytes(2, "big")
    body += len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def wait_listening(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port} within {timeout}s")


def open_connections(port, n, prefix):
    socks = []
    for start in range(0, n, BATCH):
        batch = []
        for i in range(start, min(n, start + BATCH)):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(connect_packet(f"{prefix}-{i}"))
            batch.append(s)
        for s in batch:
            got = b""
            while len(got) < 4:
                chunk = s.recv(4 - len(got))
                if not chunk:
                    raise RuntimeError("broker closed a connection before CONNACK")
                got += chunk
            if got != CONNACK_OK:
                raise RuntimeError(f"unexpected CONNACK {got.hex()}")
        socks.extend(batch)
    return socks


def measure(name, command, port, n, settle):
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        time.sleep(1)
        before = rss_kb(proc.pid)
        started = time.monotonic()
        socks = open_connections(port, n, name)
        connect_s = time.monotonic() - started
        time.sleep(settle)
        after = rss_kb(proc.pid)
        for s in socks:
            s.close()
        return {
            "broker": name,
            "connections": n,
            "rss_before_kb": before,
            "rss_after_kb": after,
            "bytes_per_connection": round((after - before) * 1024 / n),
            "connect_seconds": round(connect_s, 2),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def brokers(tmp):
    ironsight = os.environ.get("IRONSIGHT_BIN", str(REPO / "target/release/ironsight"))
    if not Path(ironsight).exists():
        sys.exit(f"{ironsight} not found: build it with cargo build --release")
    port = free_port()
    yield "ironsight", [ironsight, "--listen", f"127.0.0.1:{port}"], port
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if Path(mosquitto).exists():
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        yield "mosquitto", [mosquitto, "-c", str(conf)], port
    else:
        print("mosquitto not installed: measuring ironsight only", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--settle", type=float, default=8.0,
                    help="seconds to wait after the last CONNACK (ironsight parks idle "
                         "connections after 2 s)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.connections + 100 > hard:
        sys.exit(f"{args.connections} connections do not fit this process's open-file limit "
                 f"({hard})")
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(name, cmd, port, args.connections, args.settle)
                   for name, cmd, port in brokers(tmp)]
    machine = f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    print(f"Idle MQTT connections, {args.connections} per broker; {machine}; {date}\n")
    print("| broker | bytes per idle connection | RSS before | RSS after | connect time |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['broker']} | {r['bytes_per_connection']} | {r['rss_before_kb']} kB | "
              f"{r['rss_after_kb']} kB | {r['connect_seconds']} s |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine, "date": date, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
