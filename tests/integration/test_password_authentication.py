"""User names and passwords against the users file (MessagingUser), end to end: real clients
(mosquitto_pub, paho-mqtt) with the right password, a wrong one, none; a user who may not take
over another user's client id; and MQTT 5 enhanced authentication with SCRAM-SHA-256, whose
client side is `scramp` (a SCRAM implementation from PyPI), so that no password crosses the
wire.

Each refusal has its exact CONNACK: v5 0x86 / v3.1.1 4 (bad user name or password), v5 0x87 /
v3.1.1 5 (not authorized).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import scramp

import mqtt_raw as m
from helpers import V5, V311, Client, mosquitto_pub
from test_users_file import PASSWD_BIN

pytestmark = pytest.mark.ironsight_only(reason="ironsight's users file")

DEBUG = {"IRONSIGHT_LOG": "ironsight_core=debug,info"}
BAD_CREDENTIALS = {V5: 0x86, V311: 4}
NOT_AUTHORIZED = {V5: 0x87, V311: 5}


def hashed(password: str) -> str:
    """The verifier `ironsight-passwd` makes for `password` (read from a pipe)."""
    done = subprocess.run([PASSWD_BIN, "--stdin"], input=password + "\n", capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def verifiers() -> dict[str, str]:
    return {"alice": hashed("alice-secret"), "bob": hashed("bob-secret")}


@pytest.fixture
def users_broker(start_broker, verifiers):
    objects = {
        "SecurityProfile": {"Passwords": {"TLSEnabled": False,
                                          "UsePasswordAuthentication": True}},
        "MessagingUser": {"alice": {"Password": verifiers["alice"], "GroupMembership": "staff"},
                          "bob": {"Password": verifiers["bob"]}},
        "MessagingGroup": {"staff": {}},
    }
    return start_broker(endpoint={"SecurityProfile": "Passwords"}, objects=objects, env=DEBUG)


def raw(broker, proto) -> m.RawClient:
    return m.RawClient(broker.host, broker.port, version=proto)


def test_the_right_password_connects_as_the_user(users_broker, proto):
    """alice with her password is connected as user alice (the broker's "connected" line),
    and a real client (paho-mqtt) gets its own message back."""
    c = raw(users_broker, proto)
    assert c.connect("alice-1", username="alice", password=b"alice-secret").reason == 0
    c.close()
    users_broker.wait_log(r'user="alice" client_id=alice-1 ')
    paho = Client(users_broker, proto, "alice-2")
    paho.mqtt.username_pw_set("alice", "alice-secret")
    try:
        paho.connect()
        paho.subscribe("t/alice", 1)
        assert paho.publish("t/alice", b"mine", 1) == 0
        assert paho.wait_messages(1)[0].payload == b"mine"
    finally:
        paho.close()



def thread_nice_values(pid: int) -> dict[str, set[int]]:
    """Each thread name of process `pid` with the nice values its threads run at (field 19 of
    /proc/PID/task/TID/stat, counted after the parenthesised name)."""
    found: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        name = (task / "comm").read_text().strip()
        found.setdefault(name, set()).add(int(fields[16]))
    return found


def test_logins_give_way_to_traffic(users_broker):
    """The authentication threads (the side runtime and its hashing pool) run at nice 10 after
    a login has been hashed, and the shards at 0: a storm of logins takes only the CPU that
    the connected clients' traffic leaves."""
    c = raw(users_broker, V311)
    assert c.connect("alice-nice", username="alice", password=b"alice-secret").reason == 0
    c.close()
    nice = thread_nice_values(users_broker.pid)
    assert nice.get("ironsight-auth") == {10}, nice
    shards = {name: values for name, values in nice.items()
              if re.fullmatch(r"ironsight-\d+(-\d+)?", name)}
    assert shards and all(values == {0} for values in shards.values()), nice

@pytest.mark.parametrize("case", ["wrong password", "unknown user", "empty password",
                                  "no password", "no user name", "another user's password"])
def test_bad_credentials_are_refused(users_broker, proto, case):
    """Each CONNECT without the right credentials gets CONNACK bad user name or password and
    is closed: MQTT lets a user name come without a password, which is refused where
    authentication is required."""
    username, password = {
        "wrong password": ("alice", b"guess"),
        "unknown user": ("mallory", b"alice-secret"),
        "empty password": ("alice", b""),
        "no password": ("alice", None),
        "no user name": (None, None),
        "another user's password": ("alice", b"bob-secret"),
    }[case]
    c = raw(users_broker, proto)
    assert c.connect("x", username=username, password=password).reason == BAD_CREDENTIALS[proto]
    assert c.recv_until_closed() == []


def test_mosquitto_pub_with_and_without_the_password(users_broker):
    """mosquitto_pub (libmosquitto) publishes with -u/-P and is refused without the password."""
    good = mosquitto_pub(users_broker, "t/m", "x", "m-good", extra=["-u", "bob", "-P", "bob-secret"])
    assert good.returncode == 0, good.stderr
    bad = mosquitto_pub(users_broker, "t/m", "x", "m-bad", extra=["-u", "bob", "-P", "nope"])
    assert bad.returncode != 0
    assert "bad user name or password" in bad.stderr.lower(), bad.stderr


def test_another_user_cannot_take_over_a_client_id(users_broker, proto):
    """alice holds client id "phone"; bob, with his own right password, asking for "phone" is
    refused with not authorized, and alice's connection stays (PINGREQ answered)."""
    alice = raw(users_broker, proto)
    assert alice.connect("phone", username="alice", password=b"alice-secret").reason == 0
    bob = raw(users_broker, proto)
    assert bob.connect("phone", username="bob", password=b"bob-secret").reason \
        == NOT_AUTHORIZED[proto]
    alice.send(m.pingreq())
    alice.expect(m.PINGRESP)


def scram_connect(broker, user: str, password: str, client_id: str):
    """MQTT 5 enhanced authentication with SCRAM-SHA-256: the client-first message in CONNECT,
    the server-first in AUTH 0x18, the client-final in AUTH, the server-final in CONNACK, which
    the client checks. Returns the CONNACK and the raw client."""
    client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    c = raw(broker, V5)
    c.send(m.connect(client_id, version=5, props={
        "authentication_method": "SCRAM-SHA-256",
        "authentication_data": client.get_client_first().encode()}))
    challenge = c.recv(5)
    if challenge.type == m.CONNACK:
        return challenge, c
    assert (challenge.type, challenge.reason) == (m.AUTH, 0x18), challenge
    assert challenge.props["authentication_method"] == "SCRAM-SHA-256"
    client.set_server_first(challenge.props["authentication_data"].decode())
    c.send(m.auth(0x18, {"authentication_method": "SCRAM-SHA-256",
                         "authentication_data": client.get_client_final().encode()}))
    connack = c.expect(m.CONNACK)
    if connack.reason == 0:
        assert connack.props["authentication_method"] == "SCRAM-SHA-256"
        # Raises unless the server proved it knows alice's verifier.
        client.set_server_final(connack.props["authentication_data"].decode())
    return connack, c


def test_scram_authenticates_without_sending_the_password(users_broker):
    """SCRAM-SHA-256 with alice's password connects as alice, and the server proves it knows
    her verifier (scramp checks the server-final message)."""
    connack, c = scram_connect(users_broker, "alice", "alice-secret", "scram-1")
    assert connack.reason == 0
    c.send(m.pingreq())
    c.expect(m.PINGRESP)
    users_broker.wait_log(r'user="alice" client_id=scram-1 ')


@pytest.mark.parametrize("user, password", [("alice", "wrong"), ("mallory", "alice-secret")],
                         ids=["wrong password", "unknown user"])
def test_scram_with_a_wrong_password_is_refused(users_broker, user, password):
    """A wrong password, or a user the file does not hold, fails at the proof: CONNACK 0x86
    after the same two rounds, so the answer does not tell which."""
    connack, c = scram_connect(users_broker, user, password, "scram-2")
    assert connack.reason == 0x86
    assert c.recv_until_closed() == []


def test_an_assigned_client_id_belongs_to_its_user(users_broker):
    """A v5 client with an empty client id gets one assigned (CONNACK Assigned Client
    Identifier), and its session is its user's like any other: bob connecting with that id is
    refused with not authorized while alice holds it."""
    alice = raw(users_broker, V5)
    connack = alice.connect("", username="alice", password=b"alice-secret")
    assert connack.reason == 0
    assigned = connack.props["assigned_client_identifier"]
    assert assigned
    bob = raw(users_broker, V5)
    assert bob.connect(assigned, username="bob", password=b"bob-secret").reason == 0x87
    alice.send(m.pingreq())
    alice.expect(m.PINGRESP)


# User ids that try to climb out of `home/${UserID}/*`, each with the one topic under home/ that
# substitution alone would give it, and whether it may subscribe there. A value holding `/`,
# `+` or `#` is not one level and matches nothing; `*` and the text `${UserID}` are literal.
CLIMBERS = {
    "x/PRIVILEGE": ("home/x/PRIVILEGE/inbox", False),
    "+": ("home/+/inbox", False),
    "a/+": ("home/a/+/inbox", False),
    "*": ("home/*/inbox", True),
    "${UserID}": ("home/${UserID}/inbox", True),
}


@pytest.fixture
def climbers_broker(start_broker, verifiers):
    """Users with the ids of CLIMBERS (password "pw"), alice, and one policy,
    `home/${UserID}/*`."""
    users = {name: {"Password": hashed("pw")} for name in CLIMBERS}
    users["alice"] = {"Password": verifiers["alice"]}
    objects = {
        "SecurityProfile": {"Passwords": {"TLSEnabled": False,
                                          "UsePasswordAuthentication": True}},
        "MessagingUser": users,
        "TopicPolicy": {"Home": {"Topic": "home/${UserID}/*",
                                 "ActionList": "Publish,Subscribe"}},
    }
    return start_broker(endpoint={"SecurityProfile": "Passwords", "TopicPolicies": "Home"},
                        objects=objects, env=DEBUG)


@pytest.mark.parametrize("user", list(CLIMBERS), ids=list(CLIMBERS))
def test_user_ids_cannot_climb_out_of_their_level(climbers_broker, proto, user):
    """Each user id of CLIMBERS gets exactly its expected SUBACK for its own substituted topic,
    and none reaches alice's home (v5 0x87, v3 0x80); alice's own home is hers alone."""
    own, allowed = CLIMBERS[user]
    refused = 0x87 if proto == V5 else 0x80
    c = raw(climbers_broker, proto)
    assert c.connect(f"c-{len(user)}", username=user, password=b"pw").reason == 0
    suback = c.subscribe([(own, 1), ("home/alice/inbox", 1)])
    assert suback.reasons == [1 if allowed else refused, refused]
    alice = raw(climbers_broker, proto)
    assert alice.connect("alice", username="alice", password=b"alice-secret").reason == 0
    assert alice.subscribe([("home/alice/inbox", 1)]).reasons == [1]
