#!/usr/bin/env python3
"""Bystander latency while a hostile client sends the largest SUBSCRIBE the limits allow.

    python3 tests/bench/hostile_subscribe.py [--cores 1,2] [--bin target/release/ironsight]
        [--label NAME] [--filter-len 6] [--flood 4x5] [--rate 100] [--bystanders 4] [--quick]

For each shard count in --cores: start ironsight with its default limits (MaxMessageSize 4 MB,
MaxSubscriptionsPerSession 1,000) on a free loopback port; connect the bystanders (MQTT 5,
alternately QoS 0 and QoS 1), each publishing to its own topic at --rate messages a second and
subscribed to it, and measure each message's round trip (publish sent to the same message
received back; the sender keeps its schedule whatever the replies do, so a stall shows as the
latency of every message sent during it). Then, one phase after another:

- quiet: bystanders only, for reference;
- single: one client sends one SUBSCRIBE of MaxMessageSize holding as many filters of
  --filter-len characters as fit (466,032 of 6 characters: 4,194,296 bytes), and reads its
  SUBACK;
- flood: --flood CxM: C clients each send M such SUBSCRIBEs back to back, reading SUBACKs.

Each phase reports the bystanders' p50/p99/max round trip for the messages sent during it (from
the first SUBSCRIBE byte until one second after the last SUBACK), how many came back, the time
to each SUBACK, and the broker's resident memory (VmRSS) before and after, and its peak (VmHWM).
Results go to results.json and results.md in a fresh folder results/hostile-subscribe/DATE/run-N
(or --out), with the machine, the date, the binary and the git commit. Every process this
starts is stopped by its pid, with SIGKILL after 10 s; every wait has a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/integration"))
import mqtt_raw as m  # noqa: E402  (the raw MQTT encoder of the black-box tests)

PACKET_MAX = 4096 * 1024       # ironsight's default MaxMessageSize
SUBSCRIPTIONS_MAX = 1000       # ironsight's default MaxSubscriptionsPerSession
STOP_TIMEOUT_S = 10            # SIGTERM, then SIGKILL
SUBACK_TIMEOUT_S = 120         # a SUBACK later than this fails the phase
AFTER_S = 1.0                  # the window goes on this long after the last SUBACK
DRAIN_S = 2.0                  # time for late round trips before a window is counted
PARK_AFTER_S = 2               # ironsight parks a connection idle this long (shard_io.rs)


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_kb(pid: int) -> dict:
    """VmRSS (resident now) and VmHWM (the peak so far) of a process."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return {"rss_kb": found["VmRSS"], "peak_kb": found["VmHWM"]}


def cpu_seconds(pid: int) -> float:
    """CPU time the threads of a process have used, to the nanosecond (schedstat; /proc/PID/stat
    counts in 10 ms ticks). A thread that ends meanwhile takes its time with it: the broker's
    threads live as long as it does."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def config(port: int) -> dict:
    """ironsight's demo configuration on `port`, default limits spelt out."""
    return {
        "Endpoint": {"Bench": {
            "Port": port, "Interface": "127.0.0.1", "MessageHub": "Hub",
            "ConnectionPolicies": "Anyone", "TopicPolicies": "Anything",
            "MaxMessageSize": PACKET_MAX}},
        "MessageHub": {"Hub": {}},
        "ConnectionPolicy": {"Anyone": {"ClientID": "*"}},
        "TopicPolicy": {"Anything": {"Topic": "*", "ActionList": "Publish,Subscribe"}},
        "Broker": {"MaxSubscriptionsPerSession": SUBSCRIPTIONS_MAX},
    }


class BrokerProcess:
    """One ironsight process, logging into the results folder; stopped by its pid."""

    def __init__(self, binary: str, cores: int, folder: Path):
        self.port = free_port()
        path = folder / f"ironsight-{cores}-shards.json"
        path.write_text(json.dumps(config(self.port), indent=2))
        self.log = open(folder / f"ironsight-{cores}-shards.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "--config", str(path), "--cores", str(cores)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ironsight exited with {self.proc.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("ironsight did not listen within 15 s")
                time.sleep(0.05)

    def memory(self) -> dict:
        return memory_kb(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self.log.close()


class Connection:
    """One MQTT 5 connection over asyncio: sends bytes, hands whole packets to `on_packet`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, client_id: str) -> "Connection":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(reader, writer)
        writer.write(m.connect(client_id, version=5, keepalive=0))
        first, body = await asyncio.wait_for(c.read(), 10)
        assert first >> 4 == m.CONNACK and body[1] == 0, f"CONNACK {body.hex()}"
        return c

    async def read(self) -> tuple[int, bytes]:
        """The next packet's first byte and body."""
        first = (await self.reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Bystander:
    """Publishes sequence numbers to its own topic at a steady rate and records, per message,
    when it was sent and how long it took to come back."""

    def __init__(self, name: str, qos: int, rate: float):
        self.name, self.qos, self.interval = name, qos, 1 / rate
        self.topic = f"bystander/{name}"
        self.sent: dict[int, float] = {}      # sequence -> send time
        self.rtt: dict[int, float] = {}       # sequence -> round trip, seconds

    async def start(self, port: int) -> None:
        self.conn = await Connection.open(port, self.name)
        self.conn.writer.write(m.subscribe(1, [(self.topic, self.qos)]))
        first, _ = await asyncio.wait_for(self.conn.read(), 10)
        assert first >> 4 == m.SUBACK
        self.tasks = [asyncio.create_task(self.send_loop()), asyncio.create_task(self.recv_loop())]

    async def send_loop(self) -> None:
        loop, seq = asyncio.get_running_loop(), 0
        next_at = loop.time()
        while True:
            seq += 1
            packet_id = seq % 65535 + 1 if self.qos else None
            self.sent[seq] = time.perf_counter()
            self.conn.writer.write(m.publish(self.topic, seq.to_bytes(8, "big"), qos=self.qos,
                                             packet_id=packet_id, version=5))
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def recv_loop(self) -> None:
        while True:
            first, body = await self.conn.read()
            if first >> 4 != m.PUBLISH:
                continue                         # PUBACKs for our own publishes
            at = time.perf_counter()
            p = m.decode(first, body, 5)
            seq = int.from_bytes(p.payload, "big")
            self.rtt[seq] = at - self.sent[seq]
            if p.qos:
                self.conn.writer.write(m.puback(p.packet_id))

    def window(self, start: float, end: float) -> tuple[int, list[float]]:
        """Messages sent in [start, end): how many, and the round trips of those that came back."""
        seqs = [s for s, t in self.sent.items() if start <= t < end]
        return len(seqs), [self.rtt[s] for s in seqs if s in self.rtt]

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.conn.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(bystanders: list[Bystander], start: float, end: float) -> dict:
    out = {}
    for qos in sorted({b.qos for b in bystanders}):
        sent, rtts, p99s = 0, [], []
        for b in (b for b in bystanders if b.qos == qos):
            n, r = b.window(start, end)
            sent, rtts = sent + n, rtts + r
            if r:
                p99s.append(percentile(r, 99))
        ms = lambda v: round(v * 1000, 2) if v is not None else None  # noqa: E731
        out[f"qos{qos}"] = {
            "sent": sent, "received": len(rtts),
            "p50_ms": ms(percentile(rtts, 50) if rtts else None),
            "p99_ms": ms(percentile(rtts, 99) if rtts else None),
            "max_ms": ms(max(rtts, default=None)),
            # With several shards the bystanders sit on different ones (by client id): the
            # best and the worst show the hostile's shard and the others apart.
            "best_bystander_p99_ms": ms(min(p99s, default=None)),
            "worst_bystander_p99_ms": ms(max(p99s, default=None)),
        }
    return out


async def hostile_phase(port: int, packet: bytes, clients: int, each: int, tag: str) -> dict:
    """`clients` connections each send `each` copies of `packet` back to back and read their
    SUBACKs; returns when each SUBACK came, in seconds from the first byte sent."""
    conns = [await Connection.open(port, f"hostile-{tag}-{i}") for i in range(clients)]
    start = time.perf_counter()

    async def one(c: Connection) -> list[dict]:
        got = []
        for packet_id in range(1, each + 1):
            c.writer.write(m.with_packet_id(packet, packet_id))
        for _ in range(each):
            first, body = await asyncio.wait_for(c.read(), SUBACK_TIMEOUT_S)
            seconds = round(time.perf_counter() - start, 3)
            assert first >> 4 == m.SUBACK, f"expected SUBACK, got type {first >> 4}"
            granted, refused = suback_counts(body)
            got.append({"seconds": seconds, "granted": granted, "refused": refused})
        return got

    try:
        subacks = await asyncio.gather(*(one(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return {"start": start, "end": time.perf_counter(), "subacks": subacks}


def suback_counts(body: bytes) -> tuple[int, int]:
    """Granted and refused filters of a v5 SUBACK body, counted in C: decoding 466,032 reason
    codes into a Python list would stall this event loop, and with it the bystanders' clocks."""
    r = m.Reader(body)
    r.u16()
    r.pos += r.varint()                      # skip the properties
    reasons = body[r.pos:]
    granted = sum(reasons.count(code) for code in (0, 1, 2))
    return granted, len(reasons) - granted


def run_elsewhere(cores: int) -> list[int]:
    """Moves this process off the CPUs of the broker's shards (the first `cores` it may use)
    when there are others, so the load generator does not steal the broker's time; returns
    the CPUs it now runs on."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > cores:
        os.sched_setaffinity(0, cpus[cores:])
    return sorted(os.sched_getaffinity(0))


async def measure(args, cores: int, packet: bytes, filters: int, folder: Path) -> dict:
    all_cpus = os.sched_getaffinity(0)
    broker = BrokerProcess(args.bin, cores, folder)
    bench_cpus = run_elsewhere(cores)
    bystanders = [Bystander(f"by-q{i % 2}-{i}", i % 2, args.rate) for i in range(args.bystanders)]
    # Other work on the machine stretches wall-clock latencies (not the CPU time): say how much.
    run: dict = {"cores": cores, "bench_cpus": bench_cpus, "phases": {}, "memory_kb": {},
                 "load_average_before": os.getloadavg()[0]}
    try:
        for b in bystanders:
            await b.start(broker.port)
        await asyncio.sleep(1)                       # warm up
        run["memory_kb"]["before"] = broker.memory()
        quiet_start, cpu = time.perf_counter(), broker.cpu()
        await asyncio.sleep(args.quiet_s)
        quiet_cpu_s = broker.cpu() - cpu
        await asyncio.sleep(DRAIN_S)
        run["phases"]["quiet"] = {"broker_cpu_s": round(quiet_cpu_s, 3),
                                  "bystanders": summary(bystanders, quiet_start,
                                                        quiet_start + args.quiet_s)}
        clients, each = args.flood
        for name, (c, n) in (("single", (1, 1)), ("flood", (clients, each))):
            log(f"  {cores} shard(s): {name}: {c} client(s) x {n} SUBSCRIBE(s) of "
                f"{filters:,} filters")
            cpu = broker.cpu()
            h = await asyncio.wait_for(hostile_phase(broker.port, packet, c, n, name),
                                       SUBACK_TIMEOUT_S * n + 30)
            # The broker's CPU time for the SUBSCRIBEs, less what the bystanders cost it
            # meanwhile (at the quiet phase's rate): less noisy than wall-clock on a shared box.
            cpu = broker.cpu() - cpu - quiet_cpu_s / args.quiet_s * (h["end"] - h["start"])
            await asyncio.sleep(AFTER_S + DRAIN_S)
            run["phases"][name] = {
                "clients": c, "subscribes_each": n,
                "broker_cpu_ms_per_subscribe": round(max(0.0, cpu) * 1000 / (c * n), 1),
                "last_suback_s": max(s["seconds"] for got in h["subacks"] for s in got),
                "subacks": h["subacks"],
                "bystanders": summary(bystanders, h["start"], h["end"] + AFTER_S)}
            run["memory_kb"][f"after_{name}"] = broker.memory()
        # mimalloc gives freed pages back on later allocator activity, which an idle shard
        # lacks; the shard's tick asks it to (mi_collect) once a connection has parked. So an
        # idle client that parks shows what the broker really keeps.
        idle = await Connection.open(broker.port, "idle")
        await asyncio.sleep(PARK_AFTER_S + 2)
        run["memory_kb"]["after_idle_park"] = broker.memory()
        idle.close()
        run["broker_alive"] = broker.proc.poll() is None
        run["load_average_after"] = os.getloadavg()[0]
    finally:
        for b in bystanders:
            if hasattr(b, "tasks"):
                b.stop()
        broker.stop()
        os.sched_setaffinity(0, all_cpus)
    return run


def fresh_folder(base: Path, date: str) -> Path:
    n = 1
    while (base / date / f"run-{n}").exists():
        n += 1
    folder = base / date / f"run-{n}"
    folder.mkdir(parents=True)
    return folder


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def table(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"# Bystander latency under a hostile SUBSCRIBE ({results['label']})", "",
        f"Machine: {results['machine']}; {results['date']}; binary {results['binary']} "
        f"({results['git']}).",
        f"Hostile SUBSCRIBE: {s['filters']:,} filters of {s['filter_len']} characters, "
        f"{s['packet_bytes']:,} bytes (MaxMessageSize); MaxSubscriptionsPerSession "
        f"{SUBSCRIPTIONS_MAX:,}. Flood: {s['flood'][0]} clients x {s['flood'][1]} SUBSCRIBEs. "
        f"Bystanders: {s['bystanders']} at {s['rate']} msg/s each (QoS 0 and 1 alternately); "
        f"the broker on its first CPUs, this script on "
        f"{', '.join(str(r['bench_cpus']) for r in results['runs'])}.",
        "",
        "| shards | phase | last SUBACK s | broker CPU ms per SUBSCRIBE | QoS | received/sent "
        "| p50 ms | p99 ms | max ms | p99 ms, best / worst bystander | RSS after MB "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        mem = run["memory_kb"]
        for phase, data in run["phases"].items():
            after = mem["before"] if phase == "quiet" else mem[f"after_{phase}"]
            for qos, b in data["bystanders"].items():
                lines.append(
                    f"| {run['cores']} | {phase} | {data.get('last_suback_s', '')} "
                    f"| {data.get('broker_cpu_ms_per_subscribe', '')} | {qos[-1]} "
                    f"| {b['received']}/{b['sent']} | {b['p50_ms']} | {b['p99_ms']} "
                    f"| {b['max_ms']} | {b['best_bystander_p99_ms']} / "
                    f"{b['worst_bystander_p99_ms']} | {after['rss_kb'] / 1024:.1f} "
                    f"| {after['peak_kb'] / 1024:.1f} |")
    lines.append("")
    lines.append("Load average (1 min) before / after each run: " + ", ".join(
        f"{r['cores']} shard(s) {r['load_average_before']:.1f} / {r['load_average_after']:.1f}"
        for r in results["runs"]) + ".")
    lines.append("Resident memory once an idle client has parked (which has the allocator "
                 "return freed pages): " + ", ".join(
                     f"{r['cores']} shard(s) {r['memory_kb']['after_idle_park']['rss_kb'] / 1024:.1f}"
                     f" MB (before: {r['memory_kb']['before']['rss_kb'] / 1024:.1f} MB)"
                     for r in results["runs"]) + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="1,2", help="shard counts to run, comma separated")
    ap.add_argument("--bin", default=os.environ.get("IRONSIGHT_BIN",
                                                    str(REPO / "target/release/ironsight")))
    ap.add_argument("--label", default="ironsight", help="names the binary in the results")
    ap.add_argument("--filter-len", type=int, default=6)
    ap.add_argument("--flood", default="4x5", help="CLIENTSxSUBSCRIBES for the flood phase")
    ap.add_argument("--rate", type=float, default=100, help="messages/s per bystander")
    ap.add_argument("--bystanders", type=int, default=4)
    ap.add_argument("--quiet-s", type=float, default=3)
    ap.add_argument("--quick", action="store_true", help="flood 2x2, 2 s quiet")
    ap.add_argument("--out", help="folder for the results (default: a fresh dated one)")
    args = ap.parse_args()
    clients, each = (int(x) for x in args.flood.split("x"))
    args.flood = (2, 2) if args.quick else (clients, each)
    if args.quick:
        args.quiet_s = 2
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"no ironsight binary at {args.bin}: cargo build --release -p ironsight-server")
    now = datetime.datetime.now(datetime.timezone.utc)
    folder = Path(args.out) if args.out else fresh_folder(REPO / "results/hostile-subscribe",
                                                          now.strftime("%Y-%m-%d"))
    folder.mkdir(parents=True, exist_ok=True)
    packet, filters = m.largest_subscribe(PACKET_MAX, args.filter_len)
    results = {
        "label": args.label,
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "binary": args.bin, "git": git_commit(),
        "settings": {"filters": filters, "filter_len": args.filter_len,
                     "packet_bytes": len(packet), "flood": args.flood,
                     "rate": args.rate, "bystanders": args.bystanders},
        "runs": [],
    }
    for cores in (int(c) for c in args.cores.split(",")):
        results["runs"].append(asyncio.run(measure(args, cores, packet, filters, folder)))
        (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = table(results)
    (folder / "results.md").write_text(markdown)
    print(markdown)
    log(f"results in {folder}")


if __name__ == "__main__":
    main()
