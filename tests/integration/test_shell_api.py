"""ironsight-shell against a live admin endpoint, through a real sshd (`sshd.py`): every command
over `ssh admin@host <command>`, each checked against what the broker then does (its answers,
its configuration file, real MQTT clients).

The broker is given an admin endpoint (`AdminEndpoint`) and its administrator as an operator
would: AdminUserID in the configuration, the password set with `ironsight --set-admin-password`
(test_admin_api.py's `set_password`), which the running broker takes without a restart.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from pathlib import Path

import pytest

from broker import free_port
from helpers import V5, Client, wait_for
from sshd import USER, Sshd
from test_admin_api import set_password

EXIT_FAILED, EXIT_USAGE = 1, 2  # broker/shell/src/session.rs
REPO = Path(__file__).resolve().parents[2]
ADMIN_USER = "shell-admin"
ADMIN_PASSWORD = "correct horse battery staple"


def admin_endpoint_objects(port: int) -> dict:
    """The broker's configuration objects for an admin endpoint on 127.0.0.1:`port` whose
    administrator (AdminUserID, every action) is ADMIN_USER."""
    return {"AdminEndpoint": {"Port": port, "Interface": "127.0.0.1"},
            "AdminUserID": ADMIN_USER}


@pytest.fixture(scope="module")
def sshd():
    server = Sshd()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def admin(sshd, start_broker):
    """A broker with an admin endpoint, and the shell's settings pointing at it with the admin
    user's password (its file the admin login's, mode 0600). Yields (sshd, broker)."""
    port = free_port()
    broker = start_broker(objects=admin_endpoint_objects(port))
    broker.wait_log("admin endpoint listening")
    set_password(broker.config_path, ADMIN_PASSWORD, ADMIN_USER)
    write_password(sshd, ADMIN_PASSWORD)
    sshd.write_settings({"AdminURL": f"http://127.0.0.1:{port}", "User": ADMIN_USER,
                         "PasswordFile": str(sshd.folder / "password")})
    yield sshd, broker
    assert not sshd.marker.exists()


def write_password(sshd: Sshd, password: str) -> None:
    path = sshd.folder / "password"
    path.write_text(password + "\n")
    entry = pwd.getpwnam(USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o600)


def ok(sshd: Sshd, line: str) -> str:
    result = sshd.ssh(line)
    assert result.returncode == 0, f"{line}: {result}"
    return result.stdout


def refused(sshd: Sshd, line: str, code: int = EXIT_FAILED) -> str:
    result = sshd.ssh(line)
    assert result.returncode == code, f"{line}: {result}"
    return result.stderr


def test_status(admin):
    """status shows the server's section with its state."""
    sshd, _ = admin
    text = ok(sshd, "status")
    assert text.startswith("Server:") or "\nServer:" in text, text
    assert re.search(r"Status\s+Running", text), text


def test_show_and_list_read_the_configuration(admin):
    """list names the endpoints; show gives one's attributes as the broker has them."""
    sshd, broker = admin
    assert "DemoEndpoint" in ok(sshd, "list Endpoint").split("\n")
    text = ok(sshd, "show Endpoint DemoEndpoint")
    assert re.search(rf"Port\s+{broker.port}\b", text), text
    assert re.search(r"MaxMessageSize\s+", text), text
    assert "MaxInflightMessages" in ok(sshd, "show Broker")


def test_create_update_delete_change_the_broker_and_its_file(admin):
    """create adds an object (and the configuration file has it), create again is refused,
    update of a missing name is refused, update changes it, delete removes it."""
    sshd, broker = admin
    ok(sshd, 'create MessageHub ShellHub Description="made by the shell"')
    assert "ShellHub" in ok(sshd, "list MessageHub").split("\n")
    assert "ShellHub" in json.loads(broker.config_path.read_text())["MessageHub"]
    assert "ShellHub\" already exists: nothing was changed (use update)" in \
        refused(sshd, "create MessageHub ShellHub")
    assert "MessageHub \"NoSuchHub\" does not exist: nothing was changed (use create)" in \
        refused(sshd, "update MessageHub NoSuchHub Description=x")
    assert "NoSuchHub" not in ok(sshd, "list MessageHub")
    ok(sshd, "update MessageHub ShellHub Description='changed'")
    assert re.search(r"Description\s+changed", ok(sshd, "show MessageHub ShellHub"))
    ok(sshd, "delete MessageHub ShellHub")
    assert "ShellHub" not in ok(sshd, "list MessageHub").split("\n")
    assert "ShellHub" not in json.loads(broker.config_path.read_text())["MessageHub"]


def test_an_api_refusal_is_shown_and_changes_nothing(admin):
    """A wrong attribute: Amlen's code and message and the HTTP status on stderr, exit 1, and
    the object as it was."""
    sshd, broker = admin
    before = ok(sshd, "show Endpoint DemoEndpoint")
    text = refused(sshd, "update Endpoint DemoEndpoint Prot=1")
    assert re.search(r"error: CWLNA\d{4} .*Prot.* \(HTTP 4\d\d\)", text), text
    assert ok(sshd, "show Endpoint DemoEndpoint") == before


def test_wrong_credentials_are_named(admin):
    """A wrong password: the endpoint's 401 and where to set the credentials."""
    sshd, _ = admin
    write_password(sshd, "wrong")
    text = refused(sshd, "status")
    assert "(HTTP 401)" in text, text
    assert f"set User and PasswordFile in {sshd.settings_path}" in text


def test_stat_and_close_connection_with_real_clients(admin):
    """stat Server and stat Connection see two MQTT clients; close connection by client id
    closes that one and only it."""
    sshd, broker = admin
    one, two = Client(broker, V5, "shell-one"), Client(broker, V5, "shell-two")
    try:
        one.connect()
        two.connect()
        # The server's counters are the shards' snapshots, published once a second.
        wait_for(lambda: re.search(r"ActiveConnections\s+2\b", ok(sshd, "stat Server")),
                 timeout=5, message="stat Server counts both clients")
        table = ok(sshd, "stat Connection ResultCount=10")
        assert "shell-one" in table and "shell-two" in table, table
        ok(sshd, "close connection ClientID=shell-one")
        wait_for(one.disconnected.is_set, timeout=5, message="shell-one closed")
        assert not two.disconnected.is_set()
    finally:
        one.close()
        two.close()


def test_a_client_id_with_a_terminal_escape_is_shown_escaped(admin):
    """A client chooses its id; one with an escape sequence must not reach the operator's
    terminal raw."""
    sshd, broker = admin
    evil = Client(broker, V5, "evil\x1b]0;owned\x07")
    try:
        evil.connect()
        table = ok(sshd, "stat Connection")
        assert "\x1b" not in table and "\x07" not in table
        assert "evil\\u{1b}]0;owned\\u{7}" in table, table
    finally:
        evil.close()


def test_delete_mqttclient_drops_a_disconnected_session(admin):
    """delete MQTTClient <id>: the next connect of that client finds no session."""
    sshd, broker = admin
    client = Client(broker, V5, "shell-durable", clean=False, session_expiry=3600)
    try:
        client.connect()
        client.subscribe("shell/#", qos=1)
        client.disconnect()
        ok(sshd, "delete MQTTClient shell-durable")
        assert client.reconnect().session_present is False
    finally:
        client.close()


def test_stop_needs_force_without_a_terminal_and_then_stops(admin):
    """`ssh admin@host stop` is refused (nothing sent: the broker stays up); `stop force`
    stops it."""
    sshd, broker = admin
    assert "write `stop force`" in refused(sshd, "stop", EXIT_USAGE)
    assert broker.alive()
    ok(sshd, "stop force")
    wait_for(lambda: not broker.alive(), timeout=10, message="the broker to stop")
    assert broker.proc.returncode == 0
    broker.stopped_by_us = True  # asked to stop: not a crash for the fixture's check


def test_tune_show_reads_the_machine(sshd):
    """`tune show` over ssh, with no broker: the CPU layout ironsight-tune wrote, and each
    setting of the repository's own sysctl drop-in beside what this kernel reports under
    /proc/sys (read here too), a setting not in force marked; a typo is refused."""
    layout = sshd.folder / "cpu-layout.env"
    layout.write_text("# written by ironsight-tune at boot\nIRONSIGHT_CORES=1-3\n"
                      "IRONSIGHT_HOUSEKEEPING=0\n")
    layout.chmod(0o644)
    drop_in = REPO / "kernel-tuning" / "90-ironsight.conf"
    sshd.write_settings({"LayoutFile": str(layout), "SysctlFile": str(drop_in)})
    text = ok(sshd, "tune show")
    assert re.search(r"^  shards\s+1-3\b", text, re.M), text
    assert re.search(r"^  housekeeping\s+0\b", text, re.M), text
    checked = 0
    for line in drop_in.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        key, wanted = (part.strip() for part in line.split("=", 1))
        key = key.lstrip("-")
        wanted = " ".join(wanted.split())
        shown = next(l for l in text.splitlines() if l.split()[:1] == [key])
        proc = Path("/proc/sys") / key.replace(".", "/")
        if proc.exists():
            now = " ".join(proc.read_text().split())
            expected = f"{wanted}  {now}" + ("" if now == wanted else "  DIFFERS")
        else:
            expected = f"{wanted}  -  NOT IN THIS KERNEL"
        assert " ".join(shown.split()[1:]) == " ".join(expected.split()), (shown, expected)
        checked += 1
    assert checked >= 10, text
    assert re.search(rf"^{checked} settings, \d+ not as wanted\.$", text, re.M), text
    assert "tune takes: show" in refused(sshd, "tune shwo", EXIT_USAGE)
