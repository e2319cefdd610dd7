"""Disconnected-client notification (issue 13, the broker half), against the real binary with
paho-mqtt: persistent sessions subscribed under a TopicPolicy with
DisconnectedClientNotification go away, messages arrive for them, and a consumer of
`$SYS/DisconnectedClientNotification` receives, once a DisconnClientNotifInterval passes,
Amlen's JSON record for each with its counts; unmarked policies, connected clients and clean
sessions produce nothing, nothing is published while nobody subscribes (the counter on the
admin API says so), and the consumer's rules hold.

The interval is Amlen's floor, 15 s (configuration refuses less), so the notifying test waits
up to two intervals: once with nobody subscribed, once for the records. Users come from the
users file, so that the records carry a UserID; the admin API shows the counter.
"""

from __future__ import annotations

import json

import pytest

from helpers import V5, V311, Client, holds_for, wait_for
from test_admin_api import start as start_admin
from test_password_authentication import hashed

pytestmark = pytest.mark.ironsight_only(reason="MessageSight's disconnected-client notification")

TOPIC = "$SYS/DisconnectedClientNotification"
INTERVAL_S = 15
# A round comes within one interval of anything (each shard's first round is an interval
# after the start); the slack covers a tick and a busy machine.
ROUND_WAIT_S = INTERVAL_S + 10
NOT_AUTHORIZED = {V5: 0x87, V311: 0x80}
SHARED_REFUSED = {V5: 0x9E, V311: 0x80}
PERSISTENT_REFUSED = {V5: 0x83, V311: 0x80}
USERS = ["alice", "bob", "carol", "dave", "gw"]


@pytest.fixture(scope="module")
def verifiers() -> dict[str, str]:
    return {user: hashed(f"{user}-secret") for user in USERS}


@pytest.fixture
def admin(start_broker, verifiers):
    """A broker on 2 shards with password users, the admin API, and three TopicPolicies:
    `app/*` marked, `plain/*` not, and the notifications for the user gw only."""
    policies = {
        "Marked": {"Topic": "app/*", "ClientID": "*", "ActionList": "Publish,Subscribe",
                   "DisconnectedClientNotification": True},
        "Plain": {"Topic": "plain/*", "ClientID": "*", "ActionList": "Publish,Subscribe"},
        "Gateway": {"Topic": TOPIC, "UserID": "gw", "ActionList": "Subscribe"},
    }
    objects = {
        "Broker": {"DisconnClientNotifInterval": INTERVAL_S},
        "SecurityProfile": {"Passwords": {"TLSEnabled": False,
                                          "UsePasswordAuthentication": True}},
        "MessagingUser": {user: {"Password": v} for user, v in verifiers.items()},
        "TopicPolicy": policies,
    }
    endpoint = {"SecurityProfile": "Passwords", "TopicPolicies": ",".join(policies)}
    a = start_admin(start_broker, objects=objects, endpoint=endpoint, args=["--shards", "2"],
                    env={"IRONSIGHT_LOG": "ironsight_core=debug,info"})
    yield a
    a.close()


def user_client(a, proto: int, client_id: str, user: str, **kw) -> Client:
    c = Client(a.broker, proto, client_id, **kw)
    a.clients.append(c)
    c.mqtt.username_pw_set(user, f"{user}-secret")
    c.connect()
    return c


def persistent(a, proto: int, client_id: str, user: str) -> Client:
    """A client whose session outlives its connection (clean session off; v5: an hour)."""
    if proto == V5:
        return user_client(a, V5, client_id, user, clean=False, session_expiry=3600)
    return user_client(a, V311, client_id, user, clean=False)


def published(a) -> int:
    server = a.ok("GET", "/ima/v1/monitor/Server")["Server"]
    return server["DisconnectedClientNotifications"]


def test_sleeping_clients_are_notified_with_their_counts(admin):
    """Proves the whole broker half: a v3.1.1 and a v5 persistent client (alice, bob)
    subscribed under the marked policy go away; QoS 1 messages arrive for them, and for an
    unmarked subscription (carol), a connected client (dave) and a clean session. With nobody
    subscribed to the notifications a round passes and publishes nothing (the counter stays
    0); then the gateway (user gw, clean session) subscribes and receives, within an
    interval, exactly one record per sleeping client, Amlen's JSON with the count of each
    subscription, and nothing for the others; the counter says 2."""
    a = admin
    alice = persistent(a, V311, "phone-alice", "alice")
    assert alice.subscribe("app/alice/inbox", 1) == [1]
    bob = persistent(a, V5, "phone-bob", "bob")
    assert bob.subscribe("app/bob/+", 1) == [1]
    carol = persistent(a, V5, "phone-carol", "carol")
    assert carol.subscribe("plain/carol", 1) == [1]
    dave = persistent(a, V5, "phone-dave", "dave")
    assert dave.subscribe("app/dave", 1) == [1]
    clean = user_client(a, V5, "clean-dave", "dave")
    assert clean.subscribe("app/clean", 1) == [1]
    for c in (alice, bob, carol, clean):
        c.disconnect()
    publisher = user_client(a, V5, "publisher", "dave")
    sends = [("app/alice/inbox", 3), ("app/bob/chat", 2), ("app/bob/news", 1),
             ("plain/carol", 2), ("app/dave", 2), ("app/clean", 2)]
    for topic, times in sends:
        for i in range(times):
            publisher.publish(topic, f"m{i}", qos=1)
    publisher.publish("app/alice/inbox", "qos0 is not kept for a disconnected session", qos=0)
    dave.wait_messages(2, topic="app/dave")
    # Nobody subscribes yet: a round comes and goes without a word.
    assert holds_for(lambda: published(a) == 0, ROUND_WAIT_S)

    gateway = user_client(a, V5, "gateway", "gw")
    assert gateway.subscribe(TOPIC, 1) == [1]
    got = gateway.wait_messages(2, timeout=ROUND_WAIT_S)
    records = sorted((m.payload for m in got), key=lambda p: json.loads(p)["ClientId"])
    assert records == [
        b'{"ClientId":"phone-alice","UserID":"alice","MessagesArrived":'
        b'[{"TopicString":"app/alice/inbox","MessageCount":3}]}',
        b'{"ClientId":"phone-bob","UserID":"bob","MessagesArrived":'
        b'[{"TopicString":"app/bob/+","MessageCount":3}]}',
    ]
    assert all(m.qos == 1 and m.topic == TOPIC for m in got)
    wait_for(lambda: published(a) == 2, message="the counter to say 2")
    assert holds_for(lambda: len(gateway.received()) == 2, 2)


@pytest.mark.parametrize("proto", [V311, V5], ids=["v311", "v5"])
def test_the_consumer_rules_hold(admin, proto):
    """Proves Amlen's consumer rules, with their SUBACK codes: a user no policy grants the
    topic is refused (0x87; `*` never grants `$SYS`), a shared subscription to it is refused
    (0x9E), and a persistent session may not consume it (0x83); the gateway's own clean
    session is granted. (A wildcard that reaches the topic takes the same rules: proven in
    broker/core/src/shard/tests/notification.rs.)"""
    a = admin
    intruder = user_client(a, proto, "intruder", "alice")
    assert intruder.subscribe(TOPIC, 1) == [NOT_AUTHORIZED[proto]]
    assert intruder.subscribe("$SYS/#", 1) == [NOT_AUTHORIZED[proto]]
    shared = user_client(a, proto, "shared-gw", "gw")
    assert shared.subscribe(f"$share/gws/{TOPIC}", 1) == [SHARED_REFUSED[proto]]
    durable = persistent(a, proto, "durable-gw", "gw")
    assert durable.subscribe(TOPIC, 1) == [PERSISTENT_REFUSED[proto]]
    assert shared.subscribe(TOPIC, 1) == [1]
