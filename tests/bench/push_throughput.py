#!/usr/bin/env python3
"""Push gateway throughput: pushes per second from `ironsight-push` to a local HTTP/2
receiver (the APNs/FCM stand-in of the test suite, `tests/integration/push_standin.js`).

The real broker, the real gateway and the stand-in run on this machine. The benchmark
registers `--devices` devices, then publishes `--pushes` disconnected-client notifications
(in the broker's JSON, on an ordinary topic: `NotificationTopic` is configuration) at QoS 1
from one paho client, and times from the first publish until the stand-in has answered every
push. It prints one JSON line: pushes, seconds, pushes per second, the gateway's CPU seconds
(user + system, from /proc: the machine is shared, so pushes per CPU-second is the steadier
figure) and the stand-in's count of requests that were not what the service accepts (0).

    cargo build --release -p ironsight-server -p ironsight-push
    python3 tests/bench/push_throughput.py --platform apns --pushes 20000
    python3 tests/bench/push_throughput.py --quick          # 2,000 pushes, a check

Every process is stopped by its pid; every wait is bounded by --timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from broker import Broker  # noqa: E402
from helpers import V311, Client, wait_for  # noqa: E402
from pki import Pki  # noqa: E402
from push import Gateway, PushKeys, StandIn, gateway_config, notification, registration  # noqa: E402

TOPIC = "BENCH/DisconnectedClientNotification"
TOKEN = {"apns": lambda i: f"{i:064x}", "fcm": lambda i: f"fcm-{i}", "webhook": lambda i: f"hook-{i}"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, work: Path) -> dict:
    broker = Broker(work)
    broker.start()
    standin = gateway = publisher = None
    try:
        pki = Pki.create(work / "pki")
        standin = StandIn(PushKeys.create(work / "keys"), pki, quiet=True)
        config = gateway_config(broker, standin, pki, NotificationTopic=TOPIC,
                                MaxQueuedNotifications=max(args.pushes, 1),
                                MaxConcurrentPushes=args.concurrency, CountersInterval=1)
        gateway = Gateway(work, config, env={"IRONSIGHT_PUSH_LOG": "info"}).start()
        publisher = Client(broker, V311, "bench-publisher")
        publisher.mqtt.max_inflight_messages_set(1000)
        publisher.mqtt.max_queued_messages_set(0)
        publisher.connect()
        for i in range(args.devices):
            publisher.publish(f"APP/REGISTER/user-{i}/client-{i}",
                              registration(args.platform, TOKEN[args.platform](i)), qos=1)
        gateway.wait_counter("registrations", args.devices, timeout=args.timeout)
        cpu_before = cpu_seconds(gateway.proc.pid)
        start = time.monotonic()
        for n in range(args.pushes):
            i = n % args.devices
            publisher.mqtt.publish(TOPIC, notification(f"client-{i}", f"user-{i}", {"t": 1}), qos=1)
        wait_for(lambda: standin.report()["counts"].get(args.platform, 0) >= args.pushes,
                 args.timeout, interval=0.2,
                 message=lambda: f"{args.pushes} pushes; stand-in {standin.report()}, "
                                 f"gateway {gateway.counters()}")
        seconds = time.monotonic() - start
        cpu = cpu_seconds(gateway.proc.pid) - cpu_before
        report = standin.report()
        return {"platform": args.platform, "pushes": args.pushes, "devices": args.devices,
                "concurrency": args.concurrency, "seconds": round(seconds, 3),
                "pushes_per_s": round(args.pushes / seconds),
                "gateway_cpu_s": round(cpu, 3),
                "pushes_per_gateway_cpu_s": round(args.pushes / cpu) if cpu else None,
                "standin_requests": report["counts"], "standin_errors": report["errors"]}
    finally:
        if publisher:
            publisher.close()
        if gateway:
            gateway.stop()
        if standin:
            standin.stop()
        broker.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--platform", choices=sorted(TOKEN), default="apns")
    p.add_argument("--pushes", type=int, default=20000)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=64, help="MaxConcurrentPushes")
    p.add_argument("--timeout", type=float, default=300, help="bound on each wait, seconds")
    p.add_argument("--quick", action="store_true", help="2,000 pushes to 100 devices")
    args = p.parse_args()
    if args.quick:
        args.pushes, args.devices = 2000, 100
    with tempfile.TemporaryDirectory(prefix="push-bench-") as work:
        result = run(args, Path(work))
    print(json.dumps(result))
    return 0 if result["standin_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
