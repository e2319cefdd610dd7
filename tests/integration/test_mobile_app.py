"""The README's walk-through, as a new user runs it: `examples/mobile-app.json` (the seed's policy
set over TLS with password authentication) copied beside a fresh server certificate, the broker
started on it, and `mosquitto_sub` / `mosquitto_pub` over TLS with the demo users. alice reads
her own notifications and the public ones, never bob's, and may not even subscribe to his; the
back end reads alice's requests, which she may publish only under her own user and client id.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from broker import IRONSIGHT_BIN, free_port, port_open
from helpers import wait_for

pytestmark = pytest.mark.ironsight_only(reason="ironsight's example configuration")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mobile-app.json"
PASSWORDS = {"alice": "alice-demo", "bob": "bob-demo", "backend": "backend-demo"}


@pytest.fixture
def mobile_app(tmp_path):
    """The example configuration with a server certificate made as the README says, and the
    broker running on it (its endpoint moved to a free loopback port); stopped by its pid."""
    shutil.copy(EXAMPLE, tmp_path / "mobile-app.json")
    (tmp_path / "mobile-app").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", "mobile-app/server.key", "-out", "mobile-app/server.pem"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=30)
    port = free_port()
    log = open(tmp_path / "ironsight.log", "wb")
    proc = subprocess.Popen([IRONSIGHT_BIN, "--config", "mobile-app.json",
                             "--listen", f"MobileEndpoint=127.0.0.1:{port}"],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"ready" in (tmp_path / "ironsight.log").read_bytes(), 10,
                 message=lambda: (tmp_path / "ironsight.log").read_text())
        assert port_open("127.0.0.1", port)
        yield port, str(tmp_path / "mobile-app" / "server.pem")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def tls(port: int, ca: str, user: str, client_id: str) -> list[str]:
    return ["-h", "localhost", "-p", str(port), "--cafile", ca, "-V", "5",
            "-u", user, "-P", PASSWORDS[user], "-i", client_id]


def publish(port, ca, user, topic, message, client_id, qos=2) -> subprocess.CompletedProcess:
    return subprocess.run(["mosquitto_pub", *tls(port, ca, user, client_id), "-t", topic,
                           "-m", message, "-q", str(qos)], capture_output=True, text=True,
                          timeout=10)


def test_a_user_reads_their_own_and_the_public_notifications_only(mobile_app):
    port, ca = mobile_app
    sub = subprocess.Popen(["mosquitto_sub", *tls(port, ca, "alice", "alice-phone"),
                            "-t", "APP/NOTIFICATION/alice", "-t", "APP/NOTIFICATION/PUBLIC",
                            "-q", "2", "-C", "2", "-W", "10", "-v"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # mosquitto_sub has subscribed (its SUBACK is not printed)
        for topic, message in [("APP/NOTIFICATION/bob", "for bob"),
                               ("APP/NOTIFICATION/alice", "for alice"),
                               ("APP/NOTIFICATION/PUBLIC", "for everyone")]:
            done = publish(port, ca, "backend", topic, message, "backend-1")
            assert done.returncode == 0, done.stderr
        out, err = sub.communicate(timeout=15)
    finally:
        sub.kill()
    assert out.splitlines() == ["APP/NOTIFICATION/alice for alice",
                                "APP/NOTIFICATION/PUBLIC for everyone"], err


def test_nobody_subscribes_to_another_users_notifications(mobile_app):
    """alice subscribing to bob's notifications is refused (SUBACK 0x87): mosquitto_sub says
    every subscription was denied."""
    port, ca = mobile_app
    done = subprocess.run(["mosquitto_sub", *tls(port, ca, "alice", "alice-phone"),
                           "-t", "APP/NOTIFICATION/bob", "-C", "1", "-W", "3"],
                          capture_output=True, text=True, timeout=10)
    assert "denied" in (done.stdout + done.stderr).lower(), (done.stdout, done.stderr)


def test_requests_only_under_ones_own_user_and_client_id(mobile_app):
    """alice's request under APP/REQUEST/alice/<her client id> reaches the back end; one under
    bob's user name is refused (mosquitto_pub reports the PUBREC's 0x87 as "Not authorized"),
    and a wrong password never connects."""
    port, ca = mobile_app
    sub = subprocess.Popen(["mosquitto_sub", *tls(port, ca, "backend", "backend-2"),
                            "-t", "APP/REQUEST/#", "-q", "2", "-C", "1", "-W", "10", "-v"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        forged = publish(port, ca, "alice", "APP/REQUEST/bob/alice-phone", "forged", "alice-phone")
        assert "not authorized" in forged.stderr.lower(), forged.stderr
        own = publish(port, ca, "alice", "APP/REQUEST/alice/alice-phone", "mine", "alice-phone")
        assert own.returncode == 0, own.stderr
        out, err = sub.communicate(timeout=15)
    finally:
        sub.kill()
    assert out.splitlines() == ["APP/REQUEST/alice/alice-phone mine"], err
    wrong = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", ca,
                            "-V", "5", "-u", "alice", "-P", "guess", "-t", "APP/STREAM",
                            "-m", "x"], capture_output=True, text=True, timeout=10)
    assert wrong.returncode != 0
    assert "bad user name or password" in wrong.stderr.lower(), wrong.stderr
