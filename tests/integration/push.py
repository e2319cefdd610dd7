"""The push gateway's harness: the stand-ins for APNs and FCM (`push_standin.js`, node's
built-in http2 module), their keys, and the `ironsight-push` process.

- `PushKeys.create(dir)`: an APNs signing key (P-256, PKCS#8 PEM as Apple's .p8) and a
  service account JSON key (RSA 2048) whose `token_uri` points at the stand-in, with the
  public halves the stand-in verifies with.
- `StandIn(keys, pki)`: starts the stand-in on a free port with the test CA's server
  certificate; `.requests` collects what it received (one dict per request, `errors` listing
  every way a request differs from what the real service accepts), `.answer(token, [...])`
  queues answers for a token (429, 503, {"status": 429, "retryAfter": 1}, 410...).
- `Gateway(workdir, config)`: writes the gateway's JSON configuration and runs the binary
  (`IRONSIGHT_PUSH_BIN`, default beside `IRONSIGHT_BIN`), waiting until it has subscribed;
  `.stop()` sends SIGTERM and waits; `.counters()` reads its last counters line.
- `gateway_config(...)`: a configuration for a broker and a stand-in, short intervals.

Every process is stopped by its pid; every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker import IRONSIGHT_BIN, _die_with_parent, free_port
from helpers import wait_for

HERE = Path(__file__).resolve().parent
PUSH_BIN = os.environ.get("IRONSIGHT_PUSH_BIN",
                          str(Path(IRONSIGHT_BIN).with_name("ironsight-push")))
NODE = shutil.which("node") or "node"
APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC = "KEY1234567", "TEAM123456", "com.example.ironsight"
FCM_PROJECT, FCM_EMAIL = "ironsight-test", "push@ironsight-test.iam.gserviceaccount.com"
START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 10


def _pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclasses.dataclass
class PushKeys:
    dir: Path
    port: int          # the stand-in's port, fixed before it starts: token_uri names it

    @property
    def apns_key(self) -> Path:
        return self.dir / "AuthKey.p8"

    @property
    def service_account(self) -> Path:
        return self.dir / "service-account.json"

    @property
    def token_uri(self) -> str:
        return f"https://localhost:{self.port}/token"

    @classmethod
    def create(cls, directory: Path) -> "PushKeys":
        directory.mkdir(parents=True, exist_ok=True)
        keys = cls(directory, free_port())
        apns = ec.generate_private_key(ec.SECP256R1())
        keys.apns_key.write_bytes(_pem_private(apns))
        (directory / "apns-public.pem").write_bytes(_pem_public(apns))
        google = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (directory / "fcm-public.pem").write_bytes(_pem_public(google))
        keys.service_account.write_text(json.dumps({
            "type": "service_account", "project_id": FCM_PROJECT,
            "private_key_id": "0123456789abcdef", "private_key": _pem_private(google).decode(),
            "client_email": FCM_EMAIL, "client_id": "1", "token_uri": keys.token_uri}))
        return keys


class StandIn:
    """The APNs/FCM/webhook stand-in, running until `stop()`."""

    def __init__(self, keys: PushKeys, pki, quiet: bool = False):
        self.keys = keys
        config = {"port": keys.port, "cert": pki.path("server.pem"), "key": pki.path("server.key"),
                  "quiet": quiet,
                  "apns": {"publicKey": str(keys.dir / "apns-public.pem"), "keyId": APNS_KEY_ID,
                           "teamId": APNS_TEAM_ID, "topic": APNS_TOPIC},
                  "fcm": {"publicKey": str(keys.dir / "fcm-public.pem"),
                          "clientEmail": FCM_EMAIL, "project": FCM_PROJECT,
                          "tokenUri": keys.token_uri}}
        path = keys.dir / "standin.json"
        path.write_text(json.dumps(config))
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([NODE, str(HERE / "push_standin.js"), str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=_die_with_parent)
        first = self.proc.stdout.readline()
        assert first.startswith("listening "), first + self.proc.stdout.read(2000)
        self.port = int(first.split()[1])
        assert self.port == keys.port
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                request = {"service": "unparsed", "errors": [line.strip()]}
            with self.lock:
                self.requests.append(request)

    def answer(self, token: str, answers: list) -> None:
        """Queues answers for the next requests to `token` (then 200 again)."""
        self.proc.stdin.write(json.dumps({"answers": {token: answers}}) + "\n")
        self.proc.stdin.flush()

    def forget_access_tokens(self) -> None:
        self.proc.stdin.write(json.dumps({"reset": True}) + "\n")
        self.proc.stdin.flush()

    def report(self, timeout: float = 5) -> dict:
        """The stand-in's counts of requests by service, and of requests with errors."""
        before = len(self.received("report"))
        self.proc.stdin.write(json.dumps({"report": True}) + "\n")
        self.proc.stdin.flush()
        return self.wait(before + 1, "report", timeout=timeout)[-1]

    def received(self, service: str | None = None, token: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.requests
                    if (service is None or r["service"] == service)
                    and (token is None or r.get("token") == token)]

    def wait(self, n: int, service: str, token: str | None = None,
             timeout: float = 10) -> list[dict]:
        """At least `n` requests to `service` (for `token`), within `timeout`."""
        return wait_for(lambda: (got := self.received(service, token)) and len(got) >= n
                        and got, timeout,
                        message=lambda: f"{n} {service} requests; got {self.received()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self.proc.stdin.close()
        self.reader.join(STOP_TIMEOUT_S)


def gateway_config(broker, standin: StandIn | None, pki, **overrides) -> dict:
    """A configuration for `broker` and `standin`: the three services, test-sized intervals."""
    config = {
        "MQTT": {"Host": broker.host, "Port": broker.port, "ClientID": "ironsight-push",
                 "KeepAlive": 5, "ReconnectMaxDelay": 2},
        "RateLimitInterval": 0,
        "MaxAttempts": 4,
        "RetryInitialDelay": 100,
        "RetryMaxDelay": 400,
        "RequestTimeout": 5,
        "CountersInterval": 1,
        "CAFile": pki.path("ca.pem"),
    }
    if standin is not None:
        config["APNs"] = {"URL": standin.url, "KeyFile": str(standin.keys.apns_key),
                          "KeyID": APNS_KEY_ID, "TeamID": APNS_TEAM_ID, "Topic": APNS_TOPIC}
        config["FCM"] = {"URL": standin.url,
                         "ServiceAccountFile": str(standin.keys.service_account)}
        config["Webhook"] = {"URL": f"{standin.url}/webhook"}
    config.update(overrides)
    return config


class Gateway:
    """One ironsight-push process."""

    def __init__(self, workdir: Path, config: dict, env: dict | None = None):
        self.workdir = workdir
        self.config_path = workdir / "push.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = workdir / "push.log"
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, wait_subscribed: bool = True) -> "Gateway":
        if not os.access(PUSH_BIN, os.X_OK):
            raise RuntimeError(f"no ironsight-push binary at {PUSH_BIN}: build it with "
                               "`cargo build --release -p ironsight-push` or set IRONSIGHT_PUSH_BIN")
        subscribed_before = self.log().count("subscribed")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([PUSH_BIN, "--config", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         env={**os.environ, "IRONSIGHT_PUSH_LOG": "debug",
                                              **self.env},
                                         preexec_fn=_die_with_parent)
        if wait_subscribed:
            wait_for(lambda: self.log().count("subscribed") > subscribed_before
                     or self.proc.poll() is not None, START_TIMEOUT_S,
                     message=lambda: f"the gateway to subscribe:\n{self.log()}")
            assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode

    def counters(self) -> dict[str, int]:
        """The last counters line the gateway logged, as numbers."""
        lines = [l for l in self.log().splitlines() if "counters (" in l]
        if not lines:
            return {}
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1].split("counters (")[1])}

    def wait_counter(self, name: str, at_least: int, timeout: float = 10) -> dict[str, int]:
        return wait_for(lambda: (c := self.counters()).get(name, 0) >= at_least and c, timeout,
                        message=lambda: f"{name} >= {at_least}; counters {self.counters()}")


def notification(client_id: str, user_id: str, counts: dict[str, int]) -> bytes:
    """The broker's disconnected-client notification, as MessageSight publishes it."""
    return json.dumps({"ClientId": client_id, "UserID": user_id, "MessagesArrived": [
        {"TopicString": t, "MessageCount": n} for t, n in counts.items()]}).encode()


def registration(platform: str, token: str) -> bytes:
    return json.dumps({"platform": platform, "token": token}).encode()
