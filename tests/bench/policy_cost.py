#!/usr/bin/env python3
"""What the seed's policy set costs on QoS 1 fan-out: ironsight with the demo policy (one
TopicPolicy `*`, anonymous clients) against ironsight with `examples/mobile-app.json`'s six
TopicPolicies and password authentication, in one run, on the same CPUs.

The clients log in as one user who is both an app user and the back end; the publisher sends on
`APP/STREAM`, which only the sixth policy (AppBackend) lets it publish to, so every PUBLISH walks
the whole list; the 200 subscribers hold `APP/STREAM` through the fifth (AppStream). Measured for
each: the highest zero-loss delivered rate (compare.py's search, fresh broker per step), and the
broker's CPU per delivered message at a fixed 100,000 messages/s.

Writes results/policy-cost/<UTC time>/results.json and prints a table. Usage:
    python3 tests/bench/policy_cost.py
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import compare  # noqa: E402  (its brokers, CPU split and ironsight-bench runner)
from scram_verifier import verifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "examples" / "mobile-app.json").read_text())
USER, PASSWORD = "app", "app-pw"
SCENARIO = ("fanout-qos1", "QoS 1 fan-out, 1 publisher to 200 subscribers, 64-byte payload",
            ["fanout", "--subscribers", "200", "--qos", "1", "--payload", "64",
             "--inflight", "64", "--topic", "APP/STREAM"], 1000)
FIXED_RATE = 100_000


class Seeded(compare.Ironsight):
    """ironsight with the seed's policies and users-file authentication (no TLS: the policies'
    cost is what is measured)."""

    def command(self):
        command = super().command()
        path = self.workdir / "ironsight.json"
        config = json.loads(path.read_text())
        endpoint = config["Endpoint"]["Bench"]
        endpoint["SecurityProfile"] = "Passwords"
        endpoint["ConnectionPolicies"] = "MobileConnect"
        endpoint["TopicPolicies"] = SEED["Endpoint"]["MobileEndpoint"]["TopicPolicies"]
        config["SecurityProfile"] = {"Passwords": {"TLSEnabled": False,
                                                   "UsePasswordAuthentication": True}}
        config["ConnectionPolicy"] = SEED["ConnectionPolicy"]
        config["TopicPolicy"] = SEED["TopicPolicy"]
        config["MessagingGroup"] = SEED["MessagingGroup"]
        config["MessagingUser"] = {USER: {"GroupMembership": "AppUsers,AppBackend",
                                          "Password": verifier(PASSWORD.encode(), os.urandom(16))}}
        path.write_text(json.dumps(config))
        return command


def measure(broker, tool_cpus, client: list[str]) -> dict:
    name, title, args, first = SCENARIO
    scenario = (name, title, [*args, *client], first)
    steps = compare.throughput(scenario, broker, tool_cpus, quick=False)
    top = compare.best(steps)
    fixed = compare.cpu_point(scenario, broker, tool_cpus, FIXED_RATE, quick=False)
    return {"peak": top, "steps": steps, "fixed": fixed}


def main() -> None:
    compare.prepare(["ironsight"])
    broker_cpus, tool_cpus = compare.split_cpus()
    results: dict = {"machine": compare.versions(["ironsight"]), "runs": {}}
    when = datetime.datetime.now(datetime.timezone.utc)
    out = ROOT / "results" / "policy-cost" / when.strftime("%Y-%m-%dT%H%M")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="policy-cost-") as tmp:
        for label, kind, client in [
                ("demo policy", compare.Ironsight, []),
                ("seed policies", Seeded, ["--username", USER, "--password", PASSWORD])]:
            workdir = Path(tmp) / label.replace(" ", "-")
            workdir.mkdir()
            results["runs"][label] = measure(kind("ironsight", broker_cpus, workdir),
                                             tool_cpus, client)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    rows = ["| | highest zero-loss rate | CPU per message at 100,000/s |", "|---|---|---|"]
    for label, run in results["runs"].items():
        peak = run["peak"]["received_rate"] if run["peak"] else 0
        rows.append(f"| {label} | {peak:,.0f} msg/s | {run['fixed']['us_per_message']} µs |")
    print("\n".join(rows))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
