"""The configuration changed under a running broker, observed by real clients (issue 11): the
test rewrites the configuration file and sends SIGHUP, which applies it as a change through the
REST API is applied (`LiveConfig::apply`), and waits for "configuration applied", logged once
every shard has taken it up.

- A ConnectionPolicy narrowed: the clients it no longer admits are disconnected (v5 told 0x87,
  v3 closed), without their wills; the others stay connected and lose no message.
- A TopicPolicy narrowed: a subscription no longer allowed is removed from a client that stays;
  new subscriptions and publishes are decided by the new policy.
- Endpoints added (reachable), disabled and removed (closed, their clients told 0x8B).
- A change that needs a restart (the Store) is reported and not applied; the rest applies.
- A file that does not parse changes nothing.
- Operator basics: SIGHUP without --config, refused connections logged with their reason
  (within a budget), `--version` and `--help`.
- The benchmark's machinery at a small size (tests/bench/policy_apply.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from broker import IRONSIGHT_BIN, REPO, free_port, port_open
from helpers import V5, V311, Client, holds_for, wait_for

pytestmark = pytest.mark.ironsight_only(reason="ironsight's configuration file and SIGHUP")

NOT_AUTHORIZED = 0x87           # v5; paho reports a v3 CONNACK return code 5 as 0x87 too
SERVER_SHUTTING_DOWN = 0x8B
NO_MATCHING_SUBSCRIBERS = 0x10
QUOTA_EXCEEDED = 0x97
V3_SUBACK_FAILURE = 0x80


def edit(b, change) -> None:
    """Rewrites the broker's configuration file with `change(config)` applied to its JSON,
    whole (written beside it, then renamed over it)."""
    config = json.loads(b.config_path.read_text())
    change(config)
    partial = b.config_path.with_suffix(".partial")
    partial.write_text(json.dumps(config, indent=2))
    partial.replace(b.config_path)


def apply(b, change) -> None:
    """Edits the configuration file and sends SIGHUP; returns once every shard applied it."""
    edit(b, change)
    b.hangup()


@pytest.fixture
def clients():
    """Factory: clients(broker, proto, client_id, **kw) -> a connected helpers.Client (to any
    object with .host and .port), closed at teardown."""
    made: list[Client] = []

    def make(b, proto: int, client_id: str, connect: bool = True, **kw) -> Client:
        c = Client(b, proto, client_id, **kw)
        made.append(c)
        if connect:
            c.connect()
        return c

    yield make
    for c in made:
        c.close()


def test_clients_no_longer_admitted_are_disconnected_and_the_others_stay(start_broker,
                                                                          clients, proto):
    """The ConnectionPolicy narrowed from every client id to `dev-*` under three connected
    clients: app-1 is disconnected (v5 DISCONNECT 0x87; v3 closed) and its will is not
    published; dev-sub and dev-pub stay connected and exchange messages as before, none lost;
    app-1 connecting again is refused (0x87) and the refusal is logged with its reason."""
    b = start_broker()
    sub = clients(b, proto, "dev-sub")
    pub = clients(b, proto, "dev-pub")
    app = clients(b, proto, "app-1", will={"topic": "t/will", "payload": b"gone", "qos": 1})
    sub.subscribe("t/#", 1)
    assert pub.publish("t/before", b"1", 1) == 0
    sub.wait_messages(1)
    apply(b, lambda c: c["ConnectionPolicy"]["DemoConnectionPolicy"].update(ClientID="dev-*"))
    assert app.disconnected.wait(5), "app-1 is no longer admitted"
    if proto == V5:
        assert app.disconnect_reason == NOT_AUTHORIZED
    line = b.wait_log("connection closed: no longer allowed by the policies in force")[0]
    assert 'client_id=app-1' in line.string, line.string
    assert b.log_lines(r"configuration applied .* checked=3 disconnected=1 ")
    assert pub.publish("t/after", b"2", 1) == 0
    assert [m.payload for m in sub.wait_messages(2)] == [b"1", b"2"]
    assert holds_for(lambda: not sub.received("t/will"), 0.3), "a revoked client leaves no will"
    assert not sub.disconnected.is_set() and not pub.disconnected.is_set()
    again = clients(b, proto, "app-1", connect=False)
    assert again.connect(expect_reason=None).reason == NOT_AUTHORIZED
    assert b.wait_log(r'INFO .*connection refused peer=127\.0\.0\.1:\d+ client_id="app-1" '
                      r"error=no ConnectionPolicy admits the client \(NotAuthorized\)")


def narrow_topics(config: dict) -> None:
    """a/* for publishing and subscribing, b/* for publishing only, nothing else."""
    config["TopicPolicy"] = {
        "A": {"Topic": "a/*", "ClientID": "*", "ActionList": "Publish,Subscribe"},
        "B": {"Topic": "b/*", "ClientID": "*", "ActionList": "Publish"},
    }
    config["Endpoint"]["DemoEndpoint"]["TopicPolicies"] = "A,B"


def test_a_narrowed_topic_policy_removes_subscriptions_and_refuses_new_ones(start_broker,
                                                                             clients, proto):
    """TopicPolicies narrowed under a subscriber of a/+ and b/+: it stays connected and keeps
    receiving a/...; its b/+ subscription is gone (a v5 publish on b/x finds no subscriber,
    0x10), subscribing to b/+ again is refused, and a publish where no policy allows any more is
    refused (v5 PUBACK 0x87; a v3 publisher, which cannot be told, is disconnected)."""
    b = start_broker()
    sub = clients(b, proto, "sub")
    pub = clients(b, V5, "pub")
    sub.subscribe("a/+", 1)
    sub.subscribe("b/+", 1)
    apply(b, narrow_topics)
    assert b.wait_log(r"subscription removed: no longer allowed .* filter=b/\+")
    assert pub.publish("b/x", b"nobody", 1) == NO_MATCHING_SUBSCRIBERS
    assert pub.publish("a/x", b"still", 1) == 0
    assert [m.payload for m in sub.wait_messages(1)] == [b"still"]
    refused = NOT_AUTHORIZED if proto == V5 else V3_SUBACK_FAILURE
    assert sub.subscribe("b/+", 1) == [refused]
    assert pub.publish("c/x", b"denied", 1) == NOT_AUTHORIZED
    assert not sub.disconnected.is_set() and not pub.disconnected.is_set()
    v3 = clients(b, V311, "v3-pub")
    v3.publish_and_be_closed("c/x", b"denied")


def extra_endpoint(port: int) -> dict:
    return {"Port": port, "Interface": "127.0.0.1", "MessageHub": "DemoHub",
            "ConnectionPolicies": "DemoConnectionPolicy", "TopicPolicies": "DemoTopicPolicy"}


def test_endpoints_added_disabled_and_removed(start_broker, clients):
    """An endpoint added by SIGHUP listens (its clients exchange messages with the demo
    endpoint's); given another port, it listens there and no longer on the old one, its
    clients connected; disabled, its port closes and its clients are disconnected (v5 0x8B, v3
    closed) while the demo endpoint's stay; enabled again it listens again; removed, the same
    as disabled."""
    b = start_broker()
    port = free_port()
    extra = SimpleNamespace(host=b.host, port=port)
    home = clients(b, V5, "home")
    home.subscribe("x/#", 1)
    apply(b, lambda c: c["Endpoint"].update(Extra=extra_endpoint(port)))
    assert b.log_lines(rf'Endpoint "Extra": listening on 127\.0\.0\.1:{port}')
    away5 = clients(extra, V5, "away5")
    away3 = clients(extra, V311, "away3")
    assert away5.publish("x/1", b"through Extra", 1) == 0
    assert home.wait_messages(1)[0].payload == b"through Extra"

    moved = free_port()
    apply(b, lambda c: c["Endpoint"]["Extra"].update(Port=moved))
    assert not port_open(b.host, port) and port_open(b.host, moved)
    assert away5.publish("x/1", b"moved", 1) == 0, "its connections stay"
    assert home.wait_messages(2)[1].payload == b"moved"
    extra.port = moved

    apply(b, lambda c: c["Endpoint"]["Extra"].update(Enabled=False))
    assert away5.disconnected.wait(5) and away3.disconnected.wait(5)
    assert away5.disconnect_reason == SERVER_SHUTTING_DOWN
    assert not port_open(b.host, port), "a disabled endpoint's port is closed"
    assert b.log_lines(r"configuration applied .* closed=2 ")

    apply(b, lambda c: c["Endpoint"]["Extra"].update(Enabled=True))
    back = clients(extra, V5, "back")
    assert back.publish("x/2", b"again", 1) == 0

    apply(b, lambda c: c["Endpoint"].pop("Extra"))
    assert back.disconnected.wait(5)
    assert not port_open(b.host, port), "a removed endpoint's port is closed"
    assert home.publish("x/3", b"home stays", 1) == 0
    assert [m.payload for m in home.wait_messages(4)][2:] == [b"again", b"home stays"]
    assert not home.disconnected.is_set()


def test_a_change_that_needs_a_restart_is_reported_and_not_applied(start_broker, clients,
                                                                   tmp_path):
    """A new file turns the durable store on and lowers MaxSubscriptionsPerSession: the store
    needs a restart, which the log says (naming the object and attributes) without opening it;
    the subscription limit applies at once."""
    b = start_broker()
    c = clients(b, V5, "c")
    store = tmp_path / "store"

    def change(config):
        config["Store"] = {"EnableDiskPersistence": True, "DiskPersistPath": str(store)}
        config["Broker"]["MaxSubscriptionsPerSession"] = 1
    apply(b, change)
    line = b.wait_log(r"WARN .*configuration change not applied until a restart")[0].string
    assert "Store (DiskPersistPath, EnableDiskPersistence)" in line, line
    assert "restart ironsight to apply it" in line, line
    assert b.log_lines(r'change=Broker: updated \(MaxSubscriptionsPerSession\)')
    assert b.log_lines(r"configuration applied .* waiting_for_restart=1")
    assert not store.exists()
    assert c.subscribe("a", 0) == [0]
    assert c.subscribe("b", 0) == [QUOTA_EXCEEDED]


def test_a_file_that_does_not_parse_changes_nothing(start_broker, clients):
    """A file with an attribute of the wrong type (and, in the same file, a ConnectionPolicy
    that would admit nobody) is refused whole: the log names the object and attribute, the
    connected clients stay, the old policies stay in force (a new client connects, messages
    flow). A file that is not JSON at all changes nothing either."""
    b = start_broker()
    sub = clients(b, V5, "sub")
    sub.subscribe("t/#", 1)

    def bad(config):
        config["ConnectionPolicy"]["DemoConnectionPolicy"]["ClientID"] = "nobody"
        config["TopicPolicy"]["DemoTopicPolicy"]["MaxMessages"] = "many"
    edit(b, bad)
    b.proc.send_signal(signal.SIGHUP)
    line = b.wait_log(r"ERROR .*configuration reload refused; nothing changed")[0].string
    assert 'TopicPolicy "DemoTopicPolicy", attribute MaxMessages' in line, line
    b.config_path.write_text('{"Endpoint": ')
    b.proc.send_signal(signal.SIGHUP)
    b.wait_log(r"ERROR .*configuration reload refused; nothing changed .*not valid JSON")
    assert not b.log_lines("configuration applied")
    assert holds_for(lambda: not sub.disconnected.is_set(), 0.3)
    newcomer = clients(b, V5, "newcomer")
    assert newcomer.publish("t/x", b"as before", 1) == 0
    assert sub.wait_messages(1)[0].payload == b"as before"


def test_sighup_without_a_configuration_file_changes_nothing(tmp_path):
    """Started without --config, SIGHUP applies the built-in configuration again: the log
    says so, nothing changes, the broker keeps running and its client stays connected."""
    port = free_port()
    log_path = tmp_path / "ironsight.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([IRONSIGHT_BIN, "--listen", f"127.0.0.1:{port}"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    text = lambda: log_path.read_text(errors="replace")  # noqa: E731
    c = None
    try:
        wait_for(lambda: re.search(r"\bready\b", text()), 10, message="ready")
        c = Client(SimpleNamespace(host="127.0.0.1", port=port), V5, "stays")
        c.connect()
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration applied" in text(), 10, message="applied")
        assert "no --config file; applying the built-in configuration again" in text()
        assert "change=no object changed" in text()
        assert proc.poll() is None
        assert c.publish("t", b"x", 1) == NO_MATCHING_SUBSCRIBERS
        assert not c.disconnected.is_set()
    finally:
        if c:
            c.close()
        proc.terminate()
        assert proc.wait(10) == 0, "SIGTERM stops it with status 0"


def test_refused_connections_are_logged_within_a_budget(broker):
    """Connections refused before they are accepted are logged at INFO with the peer and the
    reason: bytes that are not MQTT, a protocol version the broker does not speak. A flood of
    them is logged one by one only up to a budget a second per shard; the rest are counted,
    and the lines and the counts add up to every refusal."""
    def refused_by(payload: bytes) -> None:
        with socket.create_connection((broker.host, broker.port), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(5)
            try:
                while s.recv(1024):
                    pass
            except OSError:
                pass
    refused_by(b"\x30\x00")  # PUBLISH before CONNECT
    # CONNECT, protocol level 6.
    refused_by(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([6, 0x02, 0, 60, 0, 1]) + b"a")
    assert broker.wait_log(r"INFO .*connection refused peer=127\.0\.0\.1:\d+ .*"
                           r"error=bad protocol: \[MQTT-3\.1\.0-1\]")
    assert broker.wait_log(r"INFO .*connection refused .*error=bad protocol: "
                           r"\[MQTT-3\.1\.2-2\] unsupported protocol level 6")
    # An HTTP request that is no WebSocket upgrade: refused by the transport, logged alike.
    refused_by(b"GET / HTTP/1.1\r\n\r\n")
    assert broker.wait_log(r"INFO .*connection refused peer=127\.0\.0\.1:\d+ "
                           r"error=HTTP request refused")
    flood = 150
    for _ in range(flood):
        refused_by(b"GET / HTTP/1.1\r\n\r\n")

    def accounted() -> int:
        lines = len(broker.log_lines("connection refused peer="))
        counted = sum(int(m.group(1)) for m in broker.log_lines(
            r"more connections refused \(not logged one by one\) count=(\d+)"))
        return lines + counted
    wait_for(lambda: accounted() >= flood + 3, 5,
             message=lambda: f"{flood + 3} refusals accounted for (have {accounted()})")
    assert accounted() == flood + 3
    assert broker.log_lines("more connections refused"), "the budget held some back"


def test_version_and_help_name_ironsight():
    """`ironsight --version` names ironsight; `--help` says what the broker is, its default
    port, IRONSIGHT_LOG, the signals and the exit status."""
    version = subprocess.run([IRONSIGHT_BIN, "--version"], capture_output=True, text=True,
                             timeout=10)
    assert version.returncode == 0
    assert re.fullmatch(r"ironsight \d+\.\d+\.\d+\n", version.stdout), version.stdout
    helped = subprocess.run([IRONSIGHT_BIN, "--help"], capture_output=True, text=True,
                            timeout=10)
    assert helped.returncode == 0
    for words in ("MQTT 3.1, 3.1.1 and 5.0 broker", "port 1883", "IRONSIGHT_LOG", "SIGTERM",
                  "SIGHUP", "Exit status"):
        assert words in helped.stdout, words
    wrong = subprocess.run([IRONSIGHT_BIN, "--no-such-option"], capture_output=True,
                           timeout=10)
    assert wrong.returncode == 2


def test_policy_apply_benchmark_at_a_small_size(tmp_path):
    """tests/bench/policy_apply.py with 300 clients kept, 60 disconnected and a fan-out of 5:
    its checks hold (no kept client dropped, every other one disconnected, no fan-out message
    lost) and it reports the time to apply."""
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/bench/policy_apply.py"), "--keep", "300", "--gone",
         "60", "--fanout", "5", "--hold", "3", "--ironsight", IRONSIGHT_BIN,
         "--json", str(out)],
        capture_output=True, text=True, timeout=50, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert all(result["checks"].values()), result["checks"]
    figures = result["figures"]
    assert (figures["keep_alive"], figures["gone_lost"]) == (300, 60)
    assert 0 < figures["broker_apply_ms"] < 5000
