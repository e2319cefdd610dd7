#!/usr/bin/env python3
"""Connection storm with authentication: ironsight with a users file (MessagingUser), and with
an LDAP directory (a real slapd), against Mosquitto with a password_file holding the same users,
in one run, on the same CPUs.

Each broker gets N users (`user0`..`userN-1`, password `pw<i>`): ironsight's verifiers are
SCRAM-SHA-256 at ironsight-passwd's default cost (4096 iterations), Mosquitto's are what
`mosquitto_passwd -U` makes (its default, PBKDF2-SHA512 with 101 iterations in 2.0.11), slapd's
are {SSHA}. slapd runs beside the brokers, unconfined (it is the directory, not a broker).
ironsight-bench spreads the connections over the users (--login-users) and measures:

- first logins: a fresh broker, every connection a user not seen before (N = connections);
- returning users: the same run again on the same broker (ironsight caches verified logins
  for 180 s; Mosquitto checks each time);
- CONNACK p99 at 2,000 connections/s of returning users.

Writes results/auth-storm/<UTC time>/results.json and results.md. Usage:
    python3 tests/bench/auth_storm.py [--connections 5000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import compare  # noqa: E402  (its brokers, CPU split and ironsight-bench runner)
from scram_verifier import verifier  # noqa: E402
from slapd import Slapd  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class AuthIronsight(compare.Ironsight):
    users = 0

    def command(self):
        command = super().command()
        path = self.workdir / "ironsight.json"
        config = json.loads(path.read_text())
        config["SecurityProfile"] = {"Passwords": {"TLSEnabled": False,
                                                   "UsePasswordAuthentication": True}}
        config["Endpoint"]["Bench"]["SecurityProfile"] = "Passwords"
        config["MessagingUser"] = {
            f"user{i}": {"Password": verifier(f"pw{i}".encode(), os.urandom(16))}
            for i in range(self.users)}
        path.write_text(json.dumps(config))
        return command


class LdapIronsight(compare.Ironsight):
    """ironsight checking passwords against `ldap`, its LDAP object (CacheTimeout 60 s, the
    longest Amlen allows, so that the returning users find their logins cached)."""
    ldap: dict = {}

    def command(self):
        command = super().command()
        path = self.workdir / "ironsight.json"
        config = json.loads(path.read_text())
        config["SecurityProfile"] = {"Passwords": {"TLSEnabled": False,
                                                   "UsePasswordAuthentication": True}}
        config["Endpoint"]["Bench"]["SecurityProfile"] = "Passwords"
        config["LDAP"] = {**self.ldap, "CacheTimeout": 60}
        path.write_text(json.dumps(config))
        return command


class AuthMosquitto(compare.Mosquitto):
    users = 0

    def command(self):
        command = super().command()
        passwords = self.workdir / "passwords"
        passwords.write_text("".join(f"user{i}:pw{i}\n" for i in range(self.users)))
        subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True, timeout=600)
        # Started as root, Mosquitto reads its password file after it became user mosquitto.
        for path in (self.workdir.parent, self.workdir, passwords):
            path.chmod(0o755 if path.is_dir() else 0o644)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(conf.read_text().replace("allow_anonymous true",
                                                 f"allow_anonymous false\npassword_file {passwords}"))
        return command


def storm(broker, tool_cpus, connections: int, rate: int) -> dict:
    result = compare.bench(["conn", "-n", str(connections), "--rate", str(rate), "--hold", "1",
                            "--mqtt", "3.1.1", "--source-addrs", "4", "--username", "user",
                            "--password", "pw", "--login-users", str(connections)],
                           broker, tool_cpus, timeout=600)
    c = result["connections"]
    cpu_s = result.get("broker", {}).get("cpu_s")
    return {"rate_per_s": round(c["rate_per_s"]), "failed": c["failed"],
            "connack_p99_ms": c["connack_latency_us"].get("p99", 0) / 1000,
            "broker_cpu_us_per_connect": round(cpu_s * 1e6 / connections) if cpu_s else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    args = parser.parse_args()
    compare.prepare(["ironsight", "mosquitto"])
    broker_cpus, tool_cpus = compare.split_cpus()
    results: dict = {"machine": compare.versions(["ironsight", "mosquitto"]),
                     "connections": args.connections, "brokers": {}}
    users = {f"user{i}": f"pw{i}" for i in range(args.connections)}
    with tempfile.TemporaryDirectory(prefix="auth-storm-") as tmp, \
            Slapd(Path(tmp) / "slapd", extra_users=users) as directory:
        LdapIronsight.ldap = directory.ldap_object()
        for name, kind in [("ironsight", AuthIronsight), ("ironsight-ldap", LdapIronsight),
                           ("mosquitto", AuthMosquitto)]:
            workdir = Path(tmp) / name
            workdir.mkdir()
            kind.users = args.connections
            broker = kind("ironsight" if kind is LdapIronsight else name, broker_cpus,
                          workdir).start()
            try:
                first = storm(broker, tool_cpus, args.connections, 0)
                again = storm(broker, tool_cpus, args.connections, 0)
                paced = storm(broker, tool_cpus, args.connections, 2000)
            finally:
                broker.stop()
            results["brokers"][name] = {"first_logins": first, "returning": again,
                                        "paced_2000_per_s": paced}
            compare.log(f"{name}: first logins {first}, returning {again}, paced {paced}")
    when = datetime.datetime.now(datetime.timezone.utc)
    out = ROOT / "results" / "auth-storm" / when.strftime("%Y-%m-%dT%H%M")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    names = ("ironsight", "ironsight-ldap", "mosquitto")
    rows = ["| | ironsight, users file | ironsight, LDAP | Mosquitto |", "|---|---|---|---|"]
    for key, title in [("first_logins", "first logins, connections/s"),
                       ("returning", "returning users, connections/s")]:
        cells = [f"{results['brokers'][b][key]['rate_per_s']:,} ({results['brokers'][b][key]['broker_cpu_us_per_connect']} µs CPU each)"
                 for b in names]
        rows.append(f"| {title} | {' | '.join(cells)} |")
    p99 = [f"{results['brokers'][b]['paced_2000_per_s']['connack_p99_ms']:.1f} ms"
           for b in names]
    rows.append(f"| CONNACK p99 at 2,000 returning users/s | {' | '.join(p99)} |")
    (out / "results.md").write_text(f"{when:%Y-%m-%d %H:%M} UTC, {args.connections} users\n\n"
                                    + "\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
