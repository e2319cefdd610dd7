#!/usr/bin/env python3
"""Side-by-side benchmark: ironsight, Mosquitto and rumqttd on one machine, in one run, with the
same load generator (ironsight-bench) and the same limits.

    python3 tests/bench/compare.py [--quick] [--cpu-only] [--out DIR] [--brokers ironsight,mosquitto,rumqttd]

What it does:
- builds ironsight and ironsight-bench (release), installs rumqttd with `cargo install rumqttd`
  and Mosquitto with apt-get when missing;
- splits the CPUs: the broker runs on the first half (at least one), the load generator on the
  rest, so neither steals the other's cores (on a 2-CPU machine: one each). ironsight gets one
  shard per broker CPU; Mosquitto is single-threaded; rumqttd's threads are confined to the
  same CPUs with taskset;
- gives every broker the same limits: 5000 queued messages per client, 128 in flight, 4 MiB
  packets, TCP_NODELAY;
- for each throughput scenario, steps the offered rate (doubling, then bisecting) and keeps the
  highest rate at which every message of the measured window arrived, with nothing lost
  (MessageSight's zero-loss rule), and the p99 latency there;
- measures the connection storm (connections/s, and CONNACK p99 at 5,000/s) and the resident
  memory per idle connection (19,000 connections per broker);
- the CPU curve: at fixed offered rates (1k to 100k messages delivered a second, point to point
  and fan-out), the broker's CPU in the measured window (utime + stime of all its threads, from
  /proc/PID/stat at the window's start and end), as % of one core and as CPU µs per delivered
  message; a point where the broker did not deliver the offered rate with nothing lost is marked
  as fallen behind. --cpu-only runs just this (a few minutes); --cpu-shards 1,2,8 repeats it with
  every broker confined to the first 1, 2 and 8 of the broker's CPUs (ironsight: that many
  shards);
- records each broker's version (ironsight's git commit, Mosquitto's version line, rumqttd's)
  and the load average before and after, since other work on the machine skews every figure;
- writes results.json, results.md and one PNG chart per scenario into a fresh folder
  results/<UTC date and time> (or --out), and prints the Markdown tables. Every broker process it
  started is stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "target/release/ironsight-bench"
IRONSIGHT = REPO / "target/release/ironsight"
LIMITS = {"max_queued": 5000, "max_inflight": 128, "max_packet": 4 * 1024 * 1024}

# name, title, ironsight-bench arguments, first rate to try (messages/s offered)
SCENARIOS = [
    ("fanout-qos0", "QoS 0 fan-out, 1 publisher to 200 subscribers, 64-byte payload",
     ["fanout", "--subscribers", "200", "--qos", "0", "--payload", "64"], 2000),
    ("fanout-qos1", "QoS 1 fan-out, 1 publisher to 200 subscribers, 64-byte payload",
     ["fanout", "--subscribers", "200", "--qos", "1", "--payload", "64", "--inflight", "64"], 1000),
    ("p2p-qos1", "QoS 1 point to point, 200 publisher/subscriber pairs, 64-byte payload",
     ["p2p", "--pairs", "200", "--qos", "1", "--payload", "64", "--inflight", "16"], 10000),
]


# The CPU curve's offered rates, in messages delivered a second (fan-out: the publisher sends
# the rate divided by its subscribers).
CPU_RATES = [1000, 5000, 20000, 50000, 100000]
# The throughput scenarios the CPU curve runs at fixed rates.
CPU_SCENARIOS = ["p2p-qos1", "fanout-qos0"]
# Share of the offered rate a broker must deliver (with nothing lost) to count as keeping up;
# the rest is the pacer's granularity and the window's edges.
KEPT_UP_SHARE = 0.97


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with status {proc.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def listening(port: int) -> bool:
    """Whether any socket listens on `port` (/proc/net/tcp and tcp6, state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_list(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


# ----- brokers ------------------------------------------------------------------------------

class Broker:
    """One broker process on a free port, confined to `cpus`; stopped by `stop()`."""

    def __init__(self, name: str, cpus: list[int], workdir: Path):
        self.name, self.cpus, self.workdir = name, cpus, workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> "Broker":
        log_file = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        wait_port(self.port, self.proc)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        # A listener can outlive its process for a moment (io_uring tears down its pending
        # operations afterwards); the next broker's readiness check must not connect to it.
        deadline = time.monotonic() + 10
        while listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


class Ironsight(Broker):
    def command(self):
        config = self.workdir / "ironsight.json"
        config.write_text(json.dumps({
            "MessageHub": {"Bench": {}},
            "Endpoint": {"Bench": {"Port": self.port, "Interface": "127.0.0.1", "MessageHub": "Bench",
                                   "ConnectionPolicies": "All", "TopicPolicies": "All",
                                   "MaxMessageSize": f"{LIMITS['max_packet'] // 1024}KB"}},
            "ConnectionPolicy": {"All": {"ClientID": "*"}},
            "TopicPolicy": {"All": {"Topic": "*", "ActionList": "Publish,Subscribe",
                                    "MaxMessages": LIMITS["max_queued"]}},
            "Broker": {"MaxInflightMessages": LIMITS["max_inflight"]},
        }))
        # taskset keeps ironsight's helper threads on the broker's CPUs too.
        return ["taskset", "-c", cpu_list(self.cpus), str(IRONSIGHT), "--config", str(config),
                "--cores", str(len(self.cpus))]


class Mosquitto(Broker):
    def command(self):
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            "set_tcp_nodelay true", f"max_queued_messages {LIMITS['max_queued']}",
            f"max_inflight_messages {LIMITS['max_inflight']}",
            f"max_packet_size {LIMITS['max_packet']}", ""]))
        return ["taskset", "-c", cpu_list(self.cpus), mosquitto_binary(), "-c", str(config)]


class Rumqttd(Broker):
    def command(self):
        config = self.workdir / "rumqttd.toml"
        config.write_text(f"""id = 0
[router]
id = 0
max_connections = 40000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{self.port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {LIMITS['max_packet']}
    max_inflight_count = {LIMITS['max_inflight']}
    dynamic_filters = true
""")
        return ["taskset", "-c", cpu_list(self.cpus), rumqttd_binary(), "--config", str(config)]


BROKERS = {"ironsight": Ironsight, "mosquitto": Mosquitto, "rumqttd": Rumqttd}


def mosquitto_binary() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def rumqttd_binary() -> str:
    return shutil.which("rumqttd") or str(Path.home() / ".cargo/bin/rumqttd")


# ----- set-up -------------------------------------------------------------------------------

def prepare(brokers: list[str]) -> None:
    log("building ironsight and ironsight-bench (release)")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "ironsight-server",
                    "-p", "ironsight-bench"], cwd=REPO, check=True)
    apt = []
    if "mosquitto" in brokers and not Path(mosquitto_binary()).exists():
        apt.append("mosquitto")
    if not Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists():
        apt.append("fonts-dejavu-core")
    if apt:
        log(f"installing {' '.join(apt)}")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *apt],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if "rumqttd" in brokers and not Path(rumqttd_binary()).exists():
        log("installing rumqttd (cargo install rumqttd)")
        subprocess.run(["cargo", "install", "--quiet", "rumqttd"], check=True)


def split_cpus(broker_count: int | None = None) -> tuple[list[int], list[int]]:
    """The broker's CPUs and the load generator's: half each by default, or the first
    `broker_count` for the broker; they share the CPUs when none would be left over."""
    cpus = sorted(os.sched_getaffinity(0))
    count = broker_count or max(1, len(cpus) // 2)
    if count > len(cpus):
        sys.exit(f"--broker-cpus {count}: this process may run on {len(cpus)} CPUs only")
    if count == len(cpus):
        return cpus, cpus
    return cpus[:count], cpus[count:]


def versions(brokers: list[str]) -> dict:
    """What exactly ran, one line each: ironsight's commit (-dirty with uncommitted changes), and
    the peers' own version lines ("mosquitto version 2.0.11", "rumqttd 0.20.0")."""
    def first_line(command):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unknown ({error})"
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else "unknown"

    found = {"ironsight": "ironsight commit " + first_line(["git", "-C", str(REPO), "describe",
                                                            "--always", "--dirty"])}
    # mosquitto has no --version: -h prints the version line first (and exits non-zero).
    found["mosquitto"] = first_line([mosquitto_binary(), "-h"])
    found["rumqttd"] = first_line([rumqttd_binary(), "--version"])
    return {name: found[name] for name in brokers}


def fresh_folder() -> Path:
    """results/<UTC date and time>, never one that exists: committed results stay as they are."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M")
    out, n = REPO / "results" / stamp, 1
    while out.exists():
        n += 1
        out = REPO / "results" / f"{stamp}-{n}"
    return out


# ----- one run of the load generator ----------------------------------------------------------

def bench(args: list[str], broker: Broker, tool_cpus: list[int], timeout: float) -> dict:
    command = ["taskset", "-c", cpu_list(tool_cpus), str(BENCH), *args,
               "--port", str(broker.port), "--broker-pid", str(broker.pid),
               "--procs", str(len(tool_cpus)), "--json-only"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not done.stdout.strip():
        raise RuntimeError(f"ironsight-bench gave no result: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def zero_loss(result: dict) -> bool:
    """Every message published in the measured window arrived, once."""
    return (result["lost"] == 0 and result["duplicates"] == 0 and result["expected"] > 0
            and result["received"] == result["expected"] and not result["errors"])


def saturated(result: dict, rate: float) -> bool:
    """The publishers could not offer the rate asked: the broker's flow control (QoS 1/2
    acknowledgements, TCP back-pressure) held them back, so a higher rate is pointless."""
    return result["sent_rate"] < 0.97 * rate


def step_rates(run, first: float, doublings: int, bisections: int) -> list[dict]:
    """Doubles the offered rate from `first` until a run loses messages (then bisects between
    the last clean rate and the first lossy one) or the broker no longer takes more (then the
    delivered rate of that run is the answer). Returns every step."""
    steps, good, bad, rate = [], None, None, first
    for _ in range(doublings):
        step = run(rate)
        steps.append(step)
        if step["zero_loss"] and step["saturated"]:
            return steps
        if step["zero_loss"]:
            good, rate = rate, rate * 2
        else:
            bad = rate
            break
    if good is None and bad is not None:
        good, bad = 0, bad  # even the first rate lost messages: bisect below it
    for _ in range(bisections if bad is not None else 0):
        rate = (good + bad) / 2
        if rate < 1:
            break
        step = run(rate)
        steps.append(step)
        if step["zero_loss"]:
            good = rate
        else:
            bad = rate
    return steps


def throughput(scenario, broker: Broker, tool_cpus, quick: bool, client=()) -> list[dict]:
    """The rate steps of one scenario; `client`: more ironsight-bench client options (--tls)."""
    name, _, args, first = scenario
    window = ["--mqtt", "3.1.1", "--warmup", "1", "--duration", "2" if quick else "4",
              "--drain", "2", *client]

    def run(rate):
        # A fresh broker for every step: an overloaded one may still be digesting the last run.
        broker.start()
        try:
            result = bench([*args, *window, "--rate", str(int(rate))], broker, tool_cpus, timeout=120)
        finally:
            broker.stop()
        step = {
            "rate": int(rate), "sent_rate": result["sent_rate"],
            "received_rate": result["received_rate"], "expected": result["expected"],
            "received": result["received"], "lost": result["lost"],
            "p50_us": result["latency"].get("p50", 0), "p99_us": result["latency"].get("p99", 0),
            "tool_cpu_percent": round(result["tool_cpu"]["percent"], 1),
            "broker_cpu_percent": round(result.get("broker", {}).get("cpu_percent", 0), 1),
            "zero_loss": zero_loss(result), "saturated": saturated(result, rate),
            "errors": result["errors"][:3],
        }
        log(f"  {broker.name:9s} {name:11s} offered {int(rate):>7}/s  delivered "
            f"{step['received_rate']:>10.0f}/s  lost {step['lost']:>8}  p99 "
            f"{step['p99_us'] / 1000:7.2f} ms  tool {step['tool_cpu_percent']}%  "
            f"broker {step['broker_cpu_percent']}%")
        return step

    return step_rates(run, first, doublings=5 if quick else 7, bisections=1 if quick else 3)


def copies(args: list[str]) -> int:
    """Messages delivered per message published: a fan-out's subscribers, else one."""
    return int(args[args.index("--subscribers") + 1]) if "--subscribers" in args else 1


def cpu_point(scenario, broker: Broker, tool_cpus, rate: int, quick: bool) -> dict:
    """The broker's CPU while it carries `rate` messages delivered a second, on a fresh broker."""
    name, _, args, _ = scenario
    window = ["--mqtt", "3.1.1", "--warmup", "1", "--duration", "3" if quick else "5",
              "--drain", "2", "--rate", str(rate / copies(args))]
    broker.start()
    try:
        result = bench([*args, *window], broker, tool_cpus, timeout=120)
    finally:
        broker.stop()
    cpu = result.get("broker", {}).get("window_cpu_percent")
    if cpu is None:
        raise RuntimeError(f"no broker CPU for the window: {result['errors'][:3]}")
    delivered = result["received_rate"]
    point = {
        "rate": rate, "sent_rate": round(result["sent_rate"] * copies(args), 1),
        "received_rate": round(delivered, 1), "lost": result["lost"],
        "cpu_percent": round(cpu, 1),
        "us_per_message": round(cpu / 100 * 1e6 / delivered, 2) if delivered > 0 else None,
        "kept_up": zero_loss(result) and delivered >= KEPT_UP_SHARE * rate,
        "p99_us": result["latency"].get("p99", 0),
        "tool_cpu_percent": round(result["tool_cpu"]["percent"], 1),
        "errors": result["errors"][:3],
    }
    log(f"  {broker.name:9s} {name:11s} offered {rate:>7}/s  delivered "
        f"{delivered:>9.0f}/s  broker CPU {point['cpu_percent']:5.1f}%  "
        f"{point['us_per_message'] or 0:7.1f} µs/msg  tool {point['tool_cpu_percent']}%"
        + ("" if point["kept_up"] else "  (fell behind)"))
    return point


def cpu_curve(names, broker_cpus, tool_cpus, workdir, shards: list[int], rates: list[int],
              quick: bool, save) -> list[dict]:
    """Every CPU scenario at every rate, for every broker confined to the first n broker CPUs
    for each n of `shards`; `save` is called after each scenario."""
    curve = []
    for n in shards:
        cpus = broker_cpus[:n]
        for scenario in (sc for sc in SCENARIOS if sc[0] in CPU_SCENARIOS):
            what = scenario[1].split(",")[0]  # "QoS 1 point to point"
            title = f"Broker CPU at fixed rates: {what}, broker on {n} CPU{'s' if n > 1 else ''}"
            entry = {"name": f"cpu-{scenario[0]}-{n}cpu", "title": title, "cpus": cpus,
                     "brokers": []}
            log(f"{entry['name']}:")
            for name in names:
                b = BROKERS[name](name, cpus, workdir)
                points, errors = [], []
                for rate in rates:
                    measured = attempt(f"{name} {entry['name']} at {rate}/s",
                                       lambda: cpu_point(scenario, b, tool_cpus, rate, quick))
                    if "error" in measured:
                        errors.append(f"{rate}/s: {measured['error']}")
                    else:
                        points.append(measured)
                entry["brokers"].append({"broker": name, "points": points,
                                         **({"errors": errors} if errors else {})})
            curve.append(entry)
            save()
    return curve


def best(steps: list[dict]) -> dict | None:
    clean = [s for s in steps if s["zero_loss"]]
    return max(clean, key=lambda s: s["received_rate"]) if clean else None


def connection_storm(broker: Broker, tool_cpus, quick: bool, client=(), paced_rate=5000) -> dict:
    """Connections/s with nothing held back, and the CONNACK p99 at `paced_rate` a second."""
    n = "5000" if quick else "15000"
    flat = bench(["conn", "-n", n, "--rate", "0", "--hold", "2", "--mqtt", "3.1.1",
                  "--source-addrs", "4", *client], broker, tool_cpus, timeout=180)
    paced = bench(["conn", "-n", "5000", "--rate", str(paced_rate), "--hold", "2", "--mqtt",
                   "3.1.1", "--source-addrs", "4", *client], broker, tool_cpus, timeout=180)
    cpu_s = flat.get("broker", {}).get("cpu_s") or None
    result = {
        "connections": int(n), "rate_per_s": round(flat["connections"]["rate_per_s"]),
        "failed": flat["connections"]["failed"], "paced_rate": paced_rate,
        "connack_p99_us_paced": paced["connections"]["connack_latency_us"].get("p99"),
        # The generator may be the bottleneck; what one broker core can take is this.
        "per_broker_cpu_s": round(int(n) / cpu_s) if cpu_s else None,
    }
    log(f"  {broker.name:9s} connection storm: {result['rate_per_s']}/s, CONNACK p99 at "
        f"{paced_rate}/s {result['connack_p99_us_paced'] / 1000:.2f} ms")
    return result


def idle_memory(broker: Broker, tool_cpus, quick: bool, client=(), n=None) -> dict:
    """RSS growth per idle connection while the generator holds N connections open."""
    n = n or (5000 if quick else 19000)
    settle, hold = 8, 60
    before_fds, before_rss = open_fds(broker.pid), rss_kb(broker.pid)
    procs = max(2, len(tool_cpus))
    command = ["taskset", "-c", cpu_list(tool_cpus), str(BENCH), "conn", "-n", str(n),
               "--rate", "0", "--hold", str(hold), "--keepalive", "600", "--mqtt", "3.1.1",
               "--source-addrs", "4", "--port", str(broker.port), "--procs", str(procs),
               "--json-only", *client]
    gen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + hold - settle - 5
        while open_fds(broker.pid) < before_fds + n and time.monotonic() < deadline:
            if gen.poll() is not None:
                raise RuntimeError(f"the generator ended early: {gen.stderr.read()[-2000:]}")
            time.sleep(0.2)
        time.sleep(settle)
        held = open_fds(broker.pid) - before_fds
        rss = rss_kb(broker.pid)
        if gen.poll() is not None or held <= 0:
            raise RuntimeError(f"no connections were held when measured: {gen.stderr.read()[-2000:]}")
    finally:
        gen.send_signal(signal.SIGINT)
        try:
            gen.wait(60)
        except subprocess.TimeoutExpired:
            gen.kill()
            gen.wait()
    # A broker that accepts slowly may hold fewer than asked when the generator gives up on
    # connections without a CONNACK; the figure is per connection actually held.
    result = {"connections": held, "asked": n, "rss_before_kb": before_rss, "rss_held_kb": rss,
              "bytes_per_connection": round((rss - before_rss) * 1024 / held)}
    log(f"  {broker.name:9s} idle memory: {result['bytes_per_connection']} B per connection "
        f"({held} held)")
    return result


# ----- report -------------------------------------------------------------------------------

def cell_best(top: dict | None) -> str:
    if top is None:
        return "no zero-loss rate"
    return f"{top['received_rate']:,.0f} msg/s, p99 {top['p99_us'] / 1000:.1f} ms"


def table(results: dict) -> str:
    load = results.get("load_average", {})
    lines = [f"Machine: {results['machine']}; {results['date']}; broker on CPU "
             f"{cpu_list(results['broker_cpus'])}, load generator on CPU "
             f"{cpu_list(results['tool_cpus'])}; load average {load.get('before', '?')} before, "
             f"{load.get('after', '?')} after.", "",
             "Versions: " + "; ".join(results.get("versions", {}).values())
             + ".", ""]
    if results["scenarios"]:
        lines += throughput_table(results)
    if results.get("cpu_curve"):
        lines += cpu_table(results)
    return "\n".join(lines) + "\n"


def cpu_table(results: dict) -> list[str]:
    """One row per scenario and offered rate: each broker's CPU and CPU per message."""
    names = results["brokers"]
    lines = ["", "Broker CPU at fixed offered rates (messages delivered a second), in the measured "
             "window: % of one core, and CPU µs per delivered message. *: the broker fell behind "
             "(delivered less than offered, or lost messages).", "",
             "| scenario | offered msg/s | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for sc in results["cpu_curve"]:
        by_broker = {b["broker"]: {p["rate"]: p for p in b["points"]} for b in sc["brokers"]}
        for rate in results["cpu_rates"]:
            cells = []
            for name in names:
                p = by_broker.get(name, {}).get(rate)
                if p is None:
                    cells.append("failed")
                    continue
                us = f", {p['us_per_message']:.1f} µs" if p["us_per_message"] else ""
                mark = "" if p["kept_up"] else f"* ({p['received_rate']:,.0f} delivered)"
                cells.append(f"{p['cpu_percent']:.1f}%{us}{mark}")
            lines.append(f"| {sc['name']} | {rate:,} | " + " | ".join(cells) + " |")
    return lines


def throughput_table(results: dict) -> list[str]:
    names = results["brokers"]
    lines = ["| scenario | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for sc in results["scenarios"]:
        cells = [b.get("error") or cell_best(b["best"]) for b in sc["brokers"]]
        lines.append(f"| {sc['title']}: highest zero-loss delivered rate | " + " | ".join(cells) + " |")
    at = results.get("latency_at_mosquitto_peak")
    if at:
        cells = [f"{at[n]['p99_us'] / 1000:.1f} ms" if n in at else "-" for n in names]
        lines.append(f"| QoS 0 fan-out p99 at Mosquitto's peak ({at['rate']:,} msg/s offered) | "
                     + " | ".join(cells) + " |")
    storm, mem = results["connection_storm"], results["idle_memory"]

    def row(title, source, show):
        cells = [source[n].get("error") or show(source[n]) if n in source else "-" for n in names]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")

    row("connection storm, connections/s", storm, lambda s: f"{s['rate_per_s']:,}")
    row("CONNACK p99 at 5,000 connections/s", storm,
        lambda s: f"{s['connack_p99_us_paced'] / 1000:.1f} ms")
    row("resident memory per idle connection", mem,
        lambda m: f"{m['bytes_per_connection']} B ({m['connections']:,} of {m['asked']:,} held)")
    return lines


def attempt(what: str, measure) -> dict:
    """Runs one measurement; a failure becomes an entry saying so instead of ending the run."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - any failure of a broker or the tool is reported
        log(f"  {what} failed: {error}")
        return {"error": f"failed: {str(error)[:200]}"}


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the results (default: a fresh results/<UTC time>)")
    ap.add_argument("--brokers", default="ironsight,mosquitto,rumqttd")
    ap.add_argument("--quick", action="store_true", help="shorter windows and fewer steps")
    ap.add_argument("--cpu-only", action="store_true",
                    help="run only the CPU curve (broker CPU at fixed offered rates)")
    ap.add_argument("--cpu-rates", type=int_list, default=CPU_RATES,
                    help="the CPU curve's offered rates, messages delivered a second "
                         f"(default {','.join(map(str, CPU_RATES))})")
    ap.add_argument("--cpu-shards", type=int_list,
                    help="run the CPU curve with the brokers on the first N of the broker's CPUs, "
                         "for each N of this list (default: all of them)")
    ap.add_argument("--broker-cpus", type=int,
                    help="CPUs for the broker (the first N; default half); the load generator "
                         "gets the rest, or shares them when none are left")
    args = ap.parse_args()
    names = args.brokers.split(",")
    unknown = [n for n in names if n not in BROKERS]
    if unknown:
        sys.exit(f"unknown broker(s): {unknown}; choose from {list(BROKERS)}")
    broker_cpus, tool_cpus = split_cpus(args.broker_cpus)
    shards = args.cpu_shards or [len(broker_cpus)]
    if any(n < 1 or n > len(broker_cpus) for n in shards):
        sys.exit(f"--cpu-shards {shards}: each must be between 1 and the broker's "
                 f"{len(broker_cpus)} CPUs (see --broker-cpus)")
    started = time.monotonic()
    prepare(names)
    out = Path(args.out) if args.out else fresh_folder()
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(names),
        "load_average": {"before": round(os.getloadavg()[0], 2)},
        "broker_cpus": broker_cpus, "tool_cpus": tool_cpus, "brokers": names,
        "scenarios": [], "connection_storm": {}, "idle_memory": {},
        "cpu_rates": args.cpu_rates, "cpu_curve": [],
    }

    def save():
        results["seconds"] = round(time.monotonic() - started)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        if not args.cpu_only:
            peak_rates_and_connections(results, names, broker_cpus, tool_cpus, Path(tmp),
                                       args.quick, save)
        results["cpu_curve"] = cpu_curve(names, broker_cpus, tool_cpus, Path(tmp), shards,
                                         args.cpu_rates, args.quick, save)
    results["load_average"]["after"] = round(os.getloadavg()[0], 2)
    save()
    markdown = table(results)
    (out / "results.md").write_text(markdown)
    subprocess.run([str(BENCH), "plot", "--input", str(out / "results.json"), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    print(markdown)
    log(f"done in {results['seconds']} s; results in {out}")


def peak_rates_and_connections(results, names, broker_cpus, tool_cpus, workdir: Path, quick,
                               save) -> None:
    """The throughput scenarios (highest zero-loss rates), the latency at Mosquitto's peak, the
    connection storm and the idle memory, into `results`."""
    def broker(name):
        return BROKERS[name](name, broker_cpus, workdir)

    for scenario in SCENARIOS:
        log(f"{scenario[0]}:")
        entry = {"name": scenario[0], "title": scenario[1], "brokers": []}
        for name in names:
            b = broker(name)
            try:
                measured = attempt(f"{name} {scenario[0]}",
                                   lambda: {"steps": throughput(scenario, b, tool_cpus, quick)})
            finally:
                b.stop()
            steps = measured.get("steps", [])
            entry["brokers"].append({"broker": name, "steps": steps, "best": best(steps),
                                     **({"error": measured["error"]} if "error" in measured else {})})
        results["scenarios"].append(entry)
        save()
    results["latency_at_mosquitto_peak"] = latency_at_mosquitto_peak(results, names, broker, tool_cpus)
    save()
    log("connections:")
    for name in names:
        b = broker(name).start()
        try:
            results["connection_storm"][name] = attempt(
                f"{name} connection storm", lambda: connection_storm(b, tool_cpus, quick))
            b.stop()
            b.start()
            results["idle_memory"][name] = attempt(
                f"{name} idle memory", lambda: idle_memory(b, tool_cpus, quick))
        finally:
            b.stop()
        save()


def latency_at_mosquitto_peak(results, names, broker, tool_cpus) -> dict | None:
    """p99 of every broker at the rate where Mosquitto peaked in the QoS 0 fan-out."""
    fanout0 = results["scenarios"][0]["brokers"]
    peak = next((b["best"] for b in fanout0 if b["broker"] == "mosquitto"), None)
    if not peak:
        return None
    at = {"rate": peak["rate"], "mosquitto": peak}
    for name in names:
        if name == "mosquitto":
            continue
        b = broker(name).start()
        try:
            run = SCENARIOS[0][2] + ["--mqtt", "3.1.1", "--warmup", "1", "--duration", "4",
                                     "--drain", "2", "--rate", str(peak["rate"])]
            r = bench(run, b, tool_cpus, timeout=120)
            at[name] = {"p99_us": r["latency"].get("p99", 0), "lost": r["lost"]}
        finally:
            b.stop()
    return at


if __name__ == "__main__":
    main()
