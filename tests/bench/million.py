#!/usr/bin/env python3
"""A million MQTT connections inside the appliance's kernel (issue 12, item 6).

The development machines allow 20,000 open files per process, so a million connections cannot
be held on them directly; inside a VM that limit does not apply. This script boots the quick-boot
image (image/quick-boot/build: Debian's kernel, the appliance's kernel tuning, the broker and
ironsight-bench in an initramfs) in QEMU with enough memory, once per phase, and has the guest
run, against its own broker:

1. `conn`: `ironsight-bench conn`, N connections (MQTT 3.1.1, keep alive an hour) opened at a
   paced rate, held, checked alive with PINGREQ, and closed. The check's PINGREQs and the
   closing DISCONNECTs go out at four times the connect rate (ironsight-bench's sweeps): all
   at once, 900,000 PINGREQs held the emulated CPUs in softirq for 30 s.
2. `fanout`: `ironsight-bench fanout`, one publisher and N - 1 subscribers on one topic,
   QoS 0, one 64-byte message a second for three seconds: each message delivered to every
   subscriber. The drain (up to 900 s) ends as soon as every delivery has arrived: an
   emulated guest delivers some 16,000 messages a second, so three million deliveries take
   minutes.

Each phase boots a fresh guest: a million closed connections leave the load tool's source
ports in TIME_WAIT and the kernel's memory to reclaim, which the next phase would otherwise
measure. While a phase runs, the guest samples every 5 s the broker's resident memory, the
kernel's slab, its TCP socket counts (/proc/net/sockstat) and the CPU time of the broker and
of the guest. Reported: connections held and alive, the connect rate and time, the broker's
resident memory per connection at the peak (the sample with the most sockets in use, less the
broker's memory before the run), the kernel's memory per connection (slab growth and TCP
buffer pages at the peak over the sockets of both ends, since client and broker share the
guest's kernel), and the fan-out's deliveries, latency and memory at its own peak.

Emulated (TCG: /dev/kvm exists on these machines but guests hang in it), the guest opens about
1,000 connections a second with 4 load processes and 40 source addresses, so a million takes
some 17 minutes to open, per phase, and the run has a deadline over all phases (default
3,600 s), after which QEMU is stopped and the results say how far it got; so does SIGINT or
SIGTERM. What the runs found is in the README ("A million connections").
With `--kvm` (on a machine where KVM works) the same run takes minutes.

    python3 tests/bench/million.py [--connections 1000000] [--rate 1000] [--memory-gib 20]
                                   [--cpus 2] [--deadline-s 3600] [--phases conn,fanout]
                                   [--kvm] [--out DIR]

Writes results.json and results.md into a fresh folder under results/million/ (or --out),
with the machine and date they came from; prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image" / "quick-boot" / "build"
IMAGE = REPO / "target" / "image" / "quick-boot"
#: ironsight-bench worker processes. The guest has no 20,000-file limit (init raises it to two
#: million), so a few workers hold everything: 53 workers of 19,000 connections each kept an
#: emulated guest so busy waking them that CONNACKs passed their 10 s deadline from about
#: 30,000 connections on.
WORKER_PROCS = 4
#: Connections per source address: under half the local port range of the appliance's tuning
#: (10000-65535), past which Linux's connect() scans the range for a free port on every call
#: (ironsight-bench warns of it).
CONNECTIONS_PER_SOURCE = 25_000
#: The clients' keep alive: longer than the slowest set-up, or the broker rightly closes the
#: first connections (at 1.5 times the keep alive) before the last are open.
KEEPALIVE_S = 3600
#: The fan-out phase: messages a second, and for how long.
FANOUT_RATE, FANOUT_SECONDS = 1, 3
#: The longest wait for the fan-out's last deliveries (it ends when all have arrived).
FANOUT_DRAIN_S = 900
PAGE_KIB = 4
#: The guest's memory. Both ends of every connection live in its kernel: at a million, its
#: slab holds some 8 GiB, and once every socket has carried data each holds about a page of TCP
#: memory (about 7 GiB for both ends), against a limit (tcp_mem, set by ironsight-tune) of half
#: the memory. With 16 GiB, the PINGREQ check took the kernel past 6 GiB of TCP memory and into
#: 30 s CPU stalls (results/million/2026-12-01T0027).
MEMORY_GIB = 20


def log(text: str) -> None:
    print(f"[million] {text}", file=sys.stderr, flush=True)


PHASES = ("conn", "fanout")
#: The least time worth booting a phase with: the guest's boot and its broker's start.
PHASE_MIN_S = 60


def bench_args(phase: str, connections: int, rate: float) -> list[str]:
    """The bench command of one phase."""
    procs = min(WORKER_PROCS, connections)
    sources = max(1, math.ceil(connections / CONNECTIONS_PER_SOURCE))
    common = ["--procs", str(procs), "--source-addrs", str(sources), "--mqtt", "3.1.1",
              "--keepalive", str(KEEPALIVE_S)]
    if phase == "conn":
        return ["conn", "-n", str(connections), "--rate", str(rate), "--hold", "10", *common]
    return ["fanout", "--publishers", "1", "--subscribers", str(connections - 1),
            "--qos", "0", "--payload", "64", "--rate", str(FANOUT_RATE), "--warmup", "0",
            "--duration", str(FANOUT_SECONDS), "--drain", str(FANOUT_DRAIN_S),
            "--connect-rate", str(rate), *common]


def boot(args, phase: str, console: Path, limit_s: float) -> tuple[float, str | None]:
    """Boots a guest for one phase and waits for it to power off, for `limit_s` (what is left
    of the deadline), or for an interrupt (SIGINT or SIGTERM: a run seen to be stuck still
    reports how far it got); returns the seconds it ran and what stopped it (None when it
    finished by itself)."""
    bench = ",".join(bench_args(phase, args.connections, args.rate))
    cmdline = f"console=ttyS0 quiet panic=-1 ironsight.bench1={bench}"
    command = ["qemu-system-x86_64", "-m", f"{args.memory_gib}G", "-smp", str(args.cpus),
               "-kernel", str(IMAGE / "vmlinuz"), "-initrd", str(IMAGE / "initrd.cpio.gz"),
               "-append", cmdline, "-nographic", "-no-reboot",
               "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    if args.kvm:
        command[1:1] = ["-enable-kvm", "-cpu", "host"]
    log(f"{phase}: booting: {' '.join(command)}")
    began = time.monotonic()
    with open(console, "wb") as out:
        qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            qemu.wait(limit_s)
            return time.monotonic() - began, None
        except subprocess.TimeoutExpired:
            log(f"deadline of {args.deadline_s} s reached: stopping QEMU")
            return time.monotonic() - began, f"the deadline ({args.deadline_s} s)"
        except KeyboardInterrupt:
            log("interrupted: stopping QEMU")
            return time.monotonic() - began, "an interrupt"
        finally:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait(30)


SAMPLE = re.compile(r"sample: uptime=([\d.]+) broker_rss_kb=(\d+) slab_kb=(\d+) "
                    r"TCP: inuse (\d+) orphan \d+ tw \d+ alloc (\d+) mem (\d+) "
                    r"(?:available_kb=(\d+) )?"
                    r"broker_cpu_ticks=(\d+) idle_ticks=(\d+) total_ticks=(\d+)")


def parse(text: str) -> dict:
    """The samples and the bench result in one phase's console output."""
    samples = [dict(uptime=float(m[1]), broker_rss_kb=int(m[2]), slab_kb=int(m[3]),
                    tcp_inuse=int(m[4]), tcp_alloc=int(m[5]), tcp_mem_pages=int(m[6]),
                    available_kb=int(m[7]) if m[7] else None, broker_cpu_ticks=int(m[8]), idle_ticks=int(m[9]),
                    total_ticks=int(m[10]))
               for m in SAMPLE.finditer(text)]
    begin, end = text.find("bench-1-begin"), text.find("bench-1-end")
    if begin < 0:
        run = {"started": False}
    elif end < 0:
        run = {"started": True, "finished": False}
    else:
        body = text[begin:end]
        status = re.search(r"bench-1-status (\d+)", body)
        start = body.find("{")
        try:
            result = json.loads(body[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            result = None
        run = {"started": True, "finished": True,
               "status": int(status[1]) if status else None, "result": result}
    return {"samples": samples, "run": run}


def at_peak(samples: list[dict]) -> dict:
    """Memory and CPU at the sample with the most TCP sockets, against the first sample (the
    guest's before any client connected)."""
    if not samples:
        return {}
    base = samples[0]
    peak = max(samples, key=lambda s: s["tcp_alloc"])
    # TCP sockets allocated count both ends (the load tool's and the broker's), and the
    # broker's listeners, which the baseline holds already.
    held = (peak["tcp_alloc"] - base["tcp_alloc"]) // 2
    figures: dict = {"peak": peak, "peak_connections_from_sockets": held,
                     # Not in the samples of runs before 2026-12-01T0102.
                     "available_kb_min": min((s["available_kb"] for s in samples
                                              if s["available_kb"] is not None), default=None),
                     "tcp_mem_pages_max": max(s["tcp_mem_pages"] for s in samples)}
    if held:
        figures["broker_rss_per_connection_b"] = round(
            (peak["broker_rss_kb"] - base["broker_rss_kb"]) * 1024 / held)
        figures["kernel_slab_per_connection_b"] = round(
            (peak["slab_kb"] - base["slab_kb"]) * 1024 / held)
        figures["tcp_buffer_pages_at_peak"] = peak["tcp_mem_pages"]
    # Where the guest's CPU time went until the peak: the broker's share, and how much was
    # busy at all (the rest is the load tool and the kernel's networking).
    total = peak["total_ticks"] - base["total_ticks"]
    if total > 0:
        figures["until_peak_cpu_share"] = {
            "broker": round((peak["broker_cpu_ticks"] - base["broker_cpu_ticks"]) / total, 3),
            "busy": round(1 - (peak["idle_ticks"] - base["idle_ticks"]) / total, 3)}
    return figures


def summarize(parsed: dict, connections: int) -> dict:
    """The figures of the phases that ran (`parsed`: phase -> parse())."""
    summary: dict = {"asked": connections}
    if "conn" in parsed:
        summary.update(at_peak(parsed["conn"]["samples"]))
        conn = parsed["conn"]["run"].get("result")
        if conn and conn["connections"]["attempted"] == 0:
            # Workers killed before they reported: no counts, only the parent's errors.
            summary["conn_unreported"] = conn["errors"]
        elif conn:
            c = conn["connections"]
            summary["conn"] = {k: c[k] for k in ("attempted", "opened", "failed",
                                                  "alive_checked", "alive", "rate_per_s")}
            summary["conn"]["connack_p99_ms"] = round(c["connack_latency_us"]["p99"] / 1000, 1)
            summary["conn"]["wall_s"] = round(conn["wall_s"], 1)
            summary["conn"]["errors"] = conn["errors"]
            summary["conn"]["broker"] = conn.get("broker")
    if "fanout" in parsed:
        fan = parsed["fanout"]["run"].get("result")
        if fan and fan["connections"]["attempted"] == 0:
            summary["fanout_unreported"] = fan["errors"]
        elif fan:
            f = {k: fan[k] for k in ("published", "expected", "received", "lost",
                                     "received_rate", "wall_s")}
            f["clients_connected"] = fan["connections"]["opened"]
            f["connect_rate_per_s"] = fan["connections"]["rate_per_s"]
            f["latency_ms"] = {k: round(fan["latency"][k] / 1000, 1)
                               for k in ("p50", "p99", "max")}
            f["errors"] = fan["errors"]
            summary["fanout"] = f
        summary["fanout_at_peak"] = at_peak(parsed["fanout"]["samples"])
    return summary


def peak_sentence(figures: dict) -> str:
    """at_peak()'s figures in words."""
    p = figures["peak"]
    text = (f"At the peak ({figures['peak_connections_from_sockets']:,} connections, from "
            f"{p['tcp_alloc']:,} TCP sockets at both ends): broker resident memory "
            f"{p['broker_rss_kb'] / 1024:,.0f} MiB, "
            f"{figures.get('broker_rss_per_connection_b', 0):,} B per connection; the guest "
            f"kernel's slab grew {figures.get('kernel_slab_per_connection_b', 0):,} B per "
            f"connection (both ends' sockets); TCP buffers held "
            f"{p['tcp_mem_pages'] * PAGE_KIB / 1024:,.1f} MiB.")
    text += (f" Over the whole phase, the kernel's TCP memory peaked at "
             f"{figures['tcp_mem_pages_max'] * PAGE_KIB / 1024:,.0f} MiB")
    if figures["available_kb_min"] is not None:
        text += (f" and the guest's available memory fell to "
                 f"{figures['available_kb_min'] / 1024:,.0f} MiB")
    text += "."

    if share := figures.get("until_peak_cpu_share"):
        text += (f" Until then the guest's CPUs were {share['busy']:.0%} busy, the broker "
                 f"{share['broker']:.0%} of their time.")
    return text


def markdown(results: dict) -> str:
    s = results["summary"]
    phases = ", ".join(f"{name} {ran['seconds']:,} s" +
                       ("" if ran["stopped_by"] is None else f" (stopped by {ran['stopped_by']})")
                       for name, ran in results["phases"].items())
    lines = [f"Machine: {results['machine']}; {results['date']}; guest: {results['guest']}.",
             "",
             f"Asked: {s['asked']:,} connections at {results['rate']:,} connections/s; a fresh "
             f"guest per phase: {phases}.", ""]
    if "conn" in results["phases"]:
        if "conn" in s:
            c = s["conn"]
            lines += ["| conn | |", "|---|---|",
                      f"| connections opened (failed) | {c['opened']:,} ({c['failed']:,}) |",
                      f"| alive at the PINGREQ check | {c['alive']:,} of "
                      f"{c['alive_checked']:,} |",
                      f"| connect rate | {c['rate_per_s']:,.0f}/s; CONNACK p99 "
                      f"{c['connack_p99_ms']} ms |",
                      f"| time (setup, hold, check, close) | {c['wall_s']} s |"]
            if c["errors"]:
                lines.append(f"| bench errors | {'; '.join(c['errors'])} |")
            lines.append("")
        elif "conn_unreported" in s:
            lines += ["The conn run reported no counts of its own: "
                      f"{'; '.join(s['conn_unreported'])}.", ""]
        else:
            lines += ["The conn run did not finish before the run was stopped.", ""]
        if "peak" in s:
            lines += [peak_sentence(s), ""]
    if "fanout" in results["phases"]:
        if "fanout" in s:
            f = s["fanout"]
            # Where deliveries outlast the 3 s window (emulated, minutes), the window's own
            # rate says nothing; the latency's maximum bounds the time they took.
            delivered = (f"{f['received']:,} of {f['expected']:,} delivered ({f['lost']:,} "
                         f"lost), {f['received_rate']:,.0f} deliveries/s within the window, "
                         f"latency p50 {f['latency_ms']['p50']:,} ms, p99 "
                         f"{f['latency_ms']['p99']:,} ms, max {f['latency_ms']['max']:,} ms"
                         if f["published"] else "no message was published"
                         + (" (the publisher connects after its worker's subscribers, and the "
                            "set-up ended before it)" if f["clients_connected"] < s["asked"]
                            else ""))
            lines += [f"Fan-out, QoS 0, 64 B, {FANOUT_RATE} message/s, one publisher and "
                      f"{s['asked'] - 1:,} subscribers asked: {f['clients_connected']:,} "
                      f"clients connected (at {f['connect_rate_per_s']:,.0f}/s); {delivered}."
                      + (f" Errors: {'; '.join(f['errors'])}." if f["errors"] else ""), ""]
        elif "fanout_unreported" in s:
            lines += ["The fan-out run reported no counts of its own: "
                      f"{'; '.join(s['fanout_unreported'])}.", ""]
        else:
            lines += ["The fan-out run did not finish before the run was stopped.", ""]
        if "peak" in s["fanout_at_peak"]:
            lines += ["Fan-out phase: " + peak_sentence(s["fanout_at_peak"]), ""]
    return "\n".join(lines)


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # SIGINT and SIGTERM stop the run and still report: a shell starts a background job with
    # SIGINT ignored, which Python would keep.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupted)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=None,
                    help="connections/s (default: 1000 emulated, 20000 with --kvm)")
    ap.add_argument("--memory-gib", type=int, default=MEMORY_GIB)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--deadline-s", type=int, default=3600,
                    help="for all phases together")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"which to run, in order (default: {','.join(PHASES)})")
    ap.add_argument("--kvm", action="store_true", help="use KVM (where guests run in it)")
    ap.add_argument("--no-build", action="store_true", help="use the image already built")
    ap.add_argument("--out", help="folder for the results (default: results/million/<date>)")
    args = ap.parse_args()
    if args.connections < 2:
        sys.exit("--connections: at least 2 (one publisher and one subscriber)")
    phases = args.phases.split(",")
    if unknown := [p for p in phases if p not in PHASES]:
        sys.exit(f"--phases: unknown {', '.join(unknown)} (known: {', '.join(PHASES)})")
    if args.rate is None:
        args.rate = 20_000 if args.kvm else 1000
    if not args.no_build:
        done = subprocess.run([str(BUILD)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"image/quick-boot/build failed: {done.stderr}")
        log(done.stdout.strip())
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M")
    out = Path(args.out) if args.out else REPO / "results" / "million" / stamp
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    ran: dict = {}
    parsed: dict = {}
    for phase in phases:
        left = args.deadline_s - (time.monotonic() - began)
        if left < PHASE_MIN_S:
            ran[phase] = {"seconds": 0, "stopped_by": f"the deadline ({args.deadline_s} s)"}
            continue
        console = out / f"console-{phase}.log"
        seconds, stopped_by = boot(args, phase, console, left)
        ran[phase] = {"seconds": round(seconds), "stopped_by": stopped_by}
        parsed[phase] = parse(console.read_text(errors="replace"))
        if stopped_by is not None:
            break
    stopped_by = next((r["stopped_by"] for r in ran.values() if r["stopped_by"]), None)
    results = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "guest": f"QEMU {'KVM' if args.kvm else 'TCG (emulated)'}, {args.cpus} CPUs, "
                 f"{args.memory_gib} GiB",
        "rate": args.rate, "deadline_s": args.deadline_s,
        "seconds": round(time.monotonic() - began), "stopped_by": stopped_by, "phases": ran,
        "summary": summarize(parsed, args.connections),
        "runs": {phase: p["run"] for phase, p in parsed.items()},
        "samples": {phase: p["samples"] for phase, p in parsed.items()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
