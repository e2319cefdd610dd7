"""Start and stop the broker under test: ironsight (the default) or Mosquitto (BROKER=mosquitto).

Both run as a child process on a free loopback port, with stdout and stderr going to a log file
that conftest.py attaches to the report of a failing test. The configuration is written from a
`BrokerConfig`, so a test says `broker_config(max_messages=10)` and each broker gets the same
limits in its own language: MessageSight's JSON object model for ironsight, a mosquitto.conf for
Mosquitto.

Tests of ironsight's own objects (TLS profiles, transports, the PROXY protocol) add them on top:
`Broker(..., endpoint={"Transports": "mqtt,wss"}, objects={"SecurityProfile": {...}},
env={"IRONSIGHT_LOG": "debug"}, args=["--cores", "2"])`. Mosquitto has no translation for those.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
KIND = os.environ.get("BROKER", "ironsight").lower()
assert KIND in ("ironsight", "mosquitto"), f"BROKER must be ironsight or mosquitto, not {KIND}"
IRONSIGHT_BIN = os.environ.get("IRONSIGHT_BIN", str(REPO / "target" / "release" / "ironsight"))
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN") or shutil.which("mosquitto") \
    or "/usr/sbin/mosquitto"

START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 5


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """The limits a test can set. The defaults are ironsight's defaults without a config."""
    max_messages: int = 5000                 # TopicPolicy.MaxMessages (per-session queue)
    behavior: str = "RejectNewMessages"      # TopicPolicy.MaxMessagesBehavior
    max_packet: str | int = "4096KB"         # Endpoint.MaxMessageSize
    max_inflight: int = 128                  # Broker.MaxInflightMessages (Receive Maximum)
    topic_aliases: int = 16                  # Broker.MaxTopicAliases
    server_keepalive: int | None = None      # Broker.ServerKeepAlive (None/0: client's value)
    max_keepalive: int | None = None         # Broker.MaxKeepAlive (None/0: no cap)
    max_subscriptions: int = 1000            # Broker.MaxSubscriptionsPerSession

    def __post_init__(self):
        assert self.behavior in ("RejectNewMessages", "DiscardOldMessages"), self.behavior


def broker_config(**overrides) -> BrokerConfig:
    """A BrokerConfig with the given fields changed, e.g. broker_config(max_messages=10)."""
    return BrokerConfig(**overrides)


def size_bytes(size: str | int) -> int:
    """'1KB' -> 1024, '4MB' -> 4194304, 512 -> 512 (MessageSight's size strings)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+)\s*(KB|MB)?\s*", size, re.IGNORECASE)
    assert m, f"bad size {size!r}"
    return int(m.group(1)) * {None: 1, "KB": 1024, "MB": 1024 * 1024}[
        m.group(2) and m.group(2).upper()]


def ironsight_config(cfg: BrokerConfig, port: int) -> dict:
    """ironsight's JSON configuration (MessageSight object model) for `cfg`."""
    return {
        "Endpoint": {"DemoEndpoint": {
            "Port": port, "Interface": "127.0.0.1", "Enabled": True, "Protocol": "MQTT",
            "MessageHub": "DemoHub", "ConnectionPolicies": "DemoConnectionPolicy",
            "TopicPolicies": "DemoTopicPolicy", "MaxMessageSize": cfg.max_packet}},
        "MessageHub": {"DemoHub": {"Description": "test hub"}},
        "ConnectionPolicy": {"DemoConnectionPolicy": {"ClientID": "*", "Protocol": "MQTT"}},
        "TopicPolicy": {"DemoTopicPolicy": {
            "Topic": "*", "ActionList": "Publish,Subscribe",
            "MaxMessages": cfg.max_messages, "MaxMessagesBehavior": cfg.behavior}},
        "Broker": {
            "MaxInflightMessages": cfg.max_inflight, "MaxTopicAliases": cfg.topic_aliases,
            "ServerKeepAlive": cfg.server_keepalive or 0,
            "MaxKeepAlive": cfg.max_keepalive or 0,
            "MaxSubscriptionsPerSession": cfg.max_subscriptions},
    }


def mosquitto_config(cfg: BrokerConfig, port: int) -> str:
    """The nearest mosquitto.conf. Mosquitto has no DiscardOldMessages and no per-session
    subscription limit; tests of those are marked ironsight_only."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"max_topic_alias {cfg.topic_aliases}",      # per listener: must follow `listener`
        "persistence false",
        "set_tcp_nodelay true",
        f"max_queued_messages {cfg.max_messages}",
        f"max_inflight_messages {cfg.max_inflight}",
        f"max_packet_size {size_bytes(cfg.max_packet)}",
        "log_dest stderr",
        "log_type all",
        "log_timestamp_format %H:%M:%S",
    ]
    assert not (cfg.server_keepalive and cfg.max_keepalive), \
        "Mosquitto has one max_keepalive for both; a test sets one of them"
    if cfg.server_keepalive or cfg.max_keepalive:
        # Mosquitto refuses max_keepalive below 10, so tests of a small server keep alive are
        # ironsight_only; the clamp only lets Mosquitto start.
        lines.append(f"max_keepalive {max(10, cfg.server_keepalive or cfg.max_keepalive)}")
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """Runs in the child before exec: have Linux kill the broker if pytest itself dies (a hard
    kill skips fixture teardown), so no broker outlives the suite."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One broker process. `.host`, `.port` and `.version_supported` (protocol levels) describe
    it; `restart(config)` stops it and starts it again on the same port."""

    host = "127.0.0.1"
    version_supported = (3, 4, 5)

    def __init__(self, workdir: Path, config: BrokerConfig | None = None,
                 endpoint: dict | None = None, objects: dict | None = None,
                 env: dict | None = None, args: list[str] | None = None):
        """`endpoint`: attributes added to the test endpoint (ironsight only); `objects`: more
        configuration objects (a "Broker" entry is merged into the Broker object); `env`:
        variables added to the broker's environment; `args`: more command-line arguments."""
        self.kind = KIND
        self.workdir = workdir
        self.config = config or BrokerConfig()
        self.endpoint, self.objects = endpoint or {}, objects or {}
        self.env, self.args = env or {}, list(args or [])
        self.port = free_port()
        self.log_path = workdir / f"{self.kind}.log"
        self.config_path = workdir / f"{self.kind}.json"
        self.proc: subprocess.Popen | None = None
        self.stopped_by_us = False

    def command(self) -> list[str]:
        """The command line that starts this broker; writes its configuration file."""
        if self.kind == "ironsight":
            config = ironsight_config(self.config, self.port)
            config["Endpoint"]["DemoEndpoint"].update(self.endpoint)
            for name, value in self.objects.items():
                if name == "Broker":
                    config["Broker"].update(value)
                else:
                    config[name] = value
            self.config_path.write_text(json.dumps(config, indent=2))
            return [IRONSIGHT_BIN, "--listen", f"{self.host}:{self.port}",
                    "--config", str(self.config_path), *self.args]
        if self.endpoint or self.objects or self.args:
            raise RuntimeError("endpoint attributes, configuration objects and arguments are "
                               "ironsight's; Mosquitto has no translation for them")
        path = self.workdir / "mosquitto.conf"
        path.write_text(mosquitto_config(self.config, self.port))
        return [MOSQUITTO_BIN, "-c", str(path)]

    def start(self) -> None:
        assert self.proc is None, "already running"
        if self.kind == "ironsight" and not os.access(IRONSIGHT_BIN, os.X_OK):
            raise RuntimeError(f"no ironsight binary at {IRONSIGHT_BIN}: build it with "
                               "`cargo build --release` or set IRONSIGHT_BIN")
        # The log is appended to across restarts: only a "ready" after these is this start's.
        ready_before = len(self.log_lines(r"\bready\b"))
        log = open(self.log_path, "ab")
        log.write(f"--- starting {self.kind} on port {self.port}: {self.config}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     env={**os.environ, **self.env} if self.env else None,
                                     preexec_fn=_die_with_parent)
        log.close()
        self.stopped_by_us = False
        deadline = time.monotonic() + START_TIMEOUT_S
        self._wait_starting(lambda: port_open(self.host, self.port), deadline,
                            f"listen on {self.port}")
        if self.kind == "ironsight":
            # The port opens when it is bound; the broker answers once every shard runs. In
            # between it reads its durable store, and may refuse to start (a damaged journal).
            self._wait_starting(lambda: len(self.log_lines(r"\bready\b")) > ready_before,
                                deadline, "get ready")

    def _wait_starting(self, started, deadline: float, what: str) -> None:
        """Wait until `started()`; raise if the broker exits first or `deadline` passes."""
        while not started():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} at start:\n"
                                   + self.log_text())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} did not {what} within {START_TIMEOUT_S}s:\n"
                                   + self.log_text())
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL after STOP_TIMEOUT_S."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.stopped_by_us = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def restart(self, config: BrokerConfig | None = None) -> None:
        """Stop and start again on the same port, with `config` if given. State that is not
        persisted (Mosquitto runs with persistence off) is gone afterwards."""
        if config is not None:
            self.config = config
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        """Resident set size of the broker process, from /proc/PID/status."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern: str) -> list[re.Match]:
        """The log lines that match the regular expression `pattern`, as matches (searched, so
        `pattern` may match anywhere in the line)."""
        found = (re.search(pattern, line) for line in self.log_text().splitlines())
        return [m for m in found if m]

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 5) -> list[re.Match]:
        """Wait until at least `count` log lines match `pattern`; return their matches."""
        def enough():
            found = self.log_lines(pattern)
            return found if len(found) >= count else None
        return wait_for(enough, timeout, message=lambda: f"{count} log lines matching "
                        f"{pattern!r} (have {len(self.log_lines(pattern))})")

    def hangup(self, timeout: float = 10) -> None:
        """SIGHUP (ironsight reads its configuration file again, with the certificate, key, CA
        and CRL files it names, and applies it) and wait until the log says every shard has
        taken it up."""
        done = len(self.log_lines("configuration applied"))
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("configuration applied", done + 1, timeout)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.host}:{self.port}>"
