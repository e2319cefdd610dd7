#!/usr/bin/env python3
"""Transports side by side: ironsight over TCP, TLS, WebSocket and WebSocket in TLS against
Mosquitto over TCP and TLS (Debian's Mosquitto 2.0.11 is built without WebSocket support), with
the same certificates, on the same cores, with the same load generator (ironsight-bench).

    python3 tests/bench/transports.py [--quick] [--out results/transports]

Measured, for each broker and transport:
- resident memory per idle connection, 15,000 held (`ironsight-bench conn`, keep alive 600 s);
- the TLS connection storm: full handshakes (no session resumption) and CONNACKs a second with
  nothing held back (on a small machine the generator's own handshakes are the limit, so the
  broker's CPU seconds per connection are reported too), and the CONNACK p99 at a fixed 1,000
  TLS connections a second;
- the highest zero-loss QoS 0 and QoS 1 fan-out rates (1 publisher to 200 subscribers, 64-byte
  payloads), stepped as compare.py steps them.

Certificates: a CA and an ECDSA P-256 server certificate for 127.0.0.1, made with openssl for
the run. The broker gets half the CPUs, the generator the other half (compare.py's split).
Writes results.json and results.md into --out and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the shared machinery of the comparison)
from compare import LIMITS, Broker, attempt, best, log  # noqa: E402

# (name, title, ironsight-bench arguments, first rate): compare.py's two fan-outs.
FANOUTS = [s for s in compare.SCENARIOS if s[0].startswith("fanout")]
IDLE_CONNECTIONS = 15000


def make_certificates(folder: Path) -> None:
    """ca.pem, server.pem and server.key (X.509 v3, SAN IP:127.0.0.1) in `folder`."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "30", "-extfile", "server.ext")
    # Mosquitto started as root drops to its own user, which must still read its key.
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)


class Ironsight(compare.Ironsight):
    """One endpoint taking all four transports on its one port."""

    def command(self):
        command = super().command()
        config_path = Path(command[command.index("--config") + 1])
        config = json.loads(config_path.read_text())
        config["CertificateProfile"] = {"Bench": {"Certificate": "server.pem", "Key": "server.key"}}
        config["SecurityProfile"] = {"Bench": {"CertificateProfile": "Bench"}}
        config["Endpoint"]["Bench"].update(SecurityProfile="Bench", Transports="mqtt,mqtts,ws,wss")
        config_path.write_text(json.dumps(config))
        return command


class MosquittoTls(compare.Mosquitto):
    """Mosquitto's TLS listener, with the same certificate and limits."""

    def command(self):
        command = super().command()
        config = self.workdir / "mosquitto.conf"
        config.write_text(config.read_text() + "certfile server.pem\nkeyfile server.key\n")
        return command


# (broker label, broker class, transport label, ironsight-bench client options)
RUNS = [
    ("ironsight", Ironsight, "tcp", []),
    ("ironsight", Ironsight, "tls", ["--tls", "--cafile", "ca.pem"]),
    ("ironsight", Ironsight, "ws", ["--ws"]),
    ("ironsight", Ironsight, "wss", ["--ws", "--tls", "--cafile", "ca.pem"]),
    ("mosquitto", compare.Mosquitto, "tcp", []),
    ("mosquitto", MosquittoTls, "tls", ["--tls", "--cafile", "ca.pem"]),
]


def in_folder(client: list[str], folder: Path) -> list[str]:
    """Client options with the CA file's full path."""
    return [str(folder / a) if a.endswith(".pem") else a for a in client]


def measure(label, cls, transport, client, cpus, tool_cpus, folder: Path, quick: bool) -> dict:
    def fresh() -> Broker:
        return cls(label, cpus, folder)

    entry = {"broker": label, "transport": transport}
    b = fresh().start()
    try:
        entry["idle_memory"] = attempt(
            f"{label} {transport} idle memory",
            lambda: compare.idle_memory(b, tool_cpus, quick, client=client,
                                        n=5000 if quick else IDLE_CONNECTIONS))
    finally:
        b.stop()
    if transport in ("tls", "wss"):
        b = fresh().start()
        try:
            entry["connection_storm"] = attempt(
                f"{label} {transport} connection storm",
                lambda: compare.connection_storm(b, tool_cpus, quick, client=client, paced_rate=1000))
        finally:
            b.stop()
    entry["fanout"] = {}
    for scenario in FANOUTS:
        b = fresh()
        try:
            measured = attempt(f"{label} {transport} {scenario[0]}",
                               lambda: {"steps": compare.throughput(scenario, b, tool_cpus, quick,
                                                                    client=client)})
        finally:
            b.stop()
        steps = measured.get("steps", [])
        entry["fanout"][scenario[0]] = {"steps": steps, "best": best(steps),
                                        **({"error": measured["error"]} if "error" in measured else {})}
    return entry


def table(results: dict) -> str:
    runs = results["runs"]
    heads = [f"{r['broker']} {r['transport']}" for r in runs]
    lines = [f"Machine: {results['machine']}; {results['date']}; broker on CPU "
             f"{compare.cpu_list(results['broker_cpus'])}, load generator on CPU "
             f"{compare.cpu_list(results['tool_cpus'])}.", "",
             "| | " + " | ".join(heads) + " |", "|---|" + "---|" * len(runs)]

    def row(title, show):
        lines.append(f"| {title} | " + " | ".join(show(r) for r in runs) + " |")

    def fan(name):
        def show(r):
            f = r["fanout"][name]
            return f.get("error") or compare.cell_best(f["best"])
        return show

    def idle(r):
        m = r["idle_memory"]
        return m.get("error") or f"{m['bytes_per_connection']:,} B ({m['connections']:,} held)"

    def storm(key, fmt):
        def show(r):
            s = r.get("connection_storm")
            if s is None:
                return "-"
            return s.get("error") or fmt(s[key])
        return show

    row("resident memory per idle connection", idle)
    row("TLS handshakes (connections/s, no resumption)", storm("rate_per_s", lambda v: f"{v:,}"))
    row("TLS handshakes per second of broker CPU", storm("per_broker_cpu_s", lambda v: f"{v:,}"))
    row("CONNACK p99 at 1,000 TLS connections/s",
        storm("connack_p99_us_paced", lambda v: f"{v / 1000:.1f} ms"))
    for name, title, _, _ in FANOUTS:
        row(f"{title}: highest zero-loss delivered rate", fan(name))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(compare.REPO / "results/transports"))
    ap.add_argument("--quick", action="store_true", help="shorter windows, fewer connections")
    args = ap.parse_args()
    started = time.monotonic()
    compare.prepare(["ironsight", "mosquitto"])
    broker_cpus, tool_cpus = compare.split_cpus()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "broker_cpus": broker_cpus, "tool_cpus": tool_cpus, "limits": LIMITS, "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_certificates(folder)
        for label, cls, transport, client in RUNS:
            log(f"{label} over {transport}:")
            results["runs"].append(measure(label, cls, transport, in_folder(client, folder),
                                           broker_cpus, tool_cpus, folder, args.quick))
            results["seconds"] = round(time.monotonic() - started)
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = table(results)
    (out / "results.md").write_text(markdown)
    print(markdown)
    log(f"done in {results['seconds']} s; results in {out}")


if __name__ == "__main__":
    main()
