"""MessageSight's messaging policies against the real binary (issue 9): ConnectionPolicy,
TopicPolicy and SubscriptionPolicy filters, `${ClientID}` and `${CommonName}` substitution and
its attack cases, `$SYS`, wills, retained messages, shared subscriptions of another
application and a resumed session whose client lost its rights, each with its exact outcome
for MQTT 3.1.1 and 5.0.

What needs an authenticated user (`UserID`, `GroupID`, `${UserID}`, `${GroupID}`) is proven in
the core (broker/core/src/policy/tests.rs and shard/tests/policy.rs) until authentication lands.

Outcomes: a refused CONNECT is CONNACK 0x87 (v5) / return code 5 (v3); a refused subscription
SUBACK 0x87 (v5) / 0x80 (v3); a refused PUBLISH PUBACK 0x87 (v5), while a v3 client, which has
no code for it, is disconnected.
"""

from __future__ import annotations

import pytest

import mqtt_raw
from helpers import V5, Client, holds_for, mosquitto_pub, mosquitto_sub
from tls_setup import client_context, tls_endpoint, tls_objects

pytestmark = pytest.mark.ironsight_only("MessageSight's policy objects are ironsight's")

NOT_AUTHORIZED = 0x87        # v5; paho also reports a v3 CONNACK return code 5 as 0x87
V3_SUBACK_FAILURE = 0x80
V3_CONNACK_NOT_AUTHORIZED = 5
DEBUG = {"IRONSIGHT_LOG": "debug"}
EVERYTHING = {"All": {"Topic": "*", "ClientID": "*", "ActionList": "Publish,Subscribe"}}


def start(start_broker, topic: dict, connection: dict | None = None,
          subscription: dict | None = None, endpoint: dict | None = None,
          objects: dict | None = None):
    """A broker whose endpoint lists the given policies ({name: attributes}, in order)."""
    connection = connection or {"Anyone": {"ClientID": "*"}}
    attrs = {"ConnectionPolicies": ",".join(connection), "TopicPolicies": ",".join(topic),
             **(endpoint or {})}
    objs = {"ConnectionPolicy": connection, "TopicPolicy": topic, **(objects or {})}
    if subscription:
        attrs["SubscriptionPolicies"] = ",".join(subscription)
        objs["SubscriptionPolicy"] = subscription
    return start_broker(endpoint=attrs, objects=objs, env=DEBUG)


@pytest.fixture
def clients():
    """Factory: clients(broker, proto, client_id, expect_reason=0, connect=True, **kw) -> a
    helpers.Client, closed at teardown."""
    made: list[Client] = []

    def make(b, proto: int, client_id: str, expect_reason: int | None = 0,
             connect: bool = True, **kw) -> Client:
        c = Client(b, proto, client_id, **kw)
        made.append(c)
        if connect:
            c.connect(expect_reason=expect_reason)
        return c

    yield make
    for c in made:
        c.close()


def refused(proto: int) -> list[int]:
    """The SUBACK of one refused filter."""
    return [NOT_AUTHORIZED if proto == V5 else V3_SUBACK_FAILURE]


def publish_refused(c: Client, topic: str, payload: bytes = b"x", retain: bool = False):
    """Publish at QoS 1 where the policies forbid it: v5 gets PUBACK 0x87; a v3 client's
    connection is closed."""
    if c.proto == V5:
        assert c.publish(topic, payload, 1, retain=retain) == NOT_AUTHORIZED
        return
    c.publish_and_be_closed(topic, payload, retain=retain)


def test_connection_policy_by_client_id(start_broker, clients, proto):
    """ConnectionPolicy ClientID `dev-*`: dev-1 connects, app-1 gets Not authorized, and the
    log says which policy's which filter refused it."""
    b = start(start_broker, EVERYTHING, connection={"Devices": {"ClientID": "dev-*"}})
    clients(b, proto, "dev-1")
    clients(b, proto, "app-1", expect_reason=NOT_AUTHORIZED)
    b.wait_log(r'no connection policy admits the client.*ConnectionPolicy "Devices": ClientID '
               r'does not match')


def test_connection_policy_by_client_address(start_broker, clients, proto):
    """ConnectionPolicy ClientAddress `127.0.0.2/31, [::1]`: a client from 127.0.0.2 connects,
    one from 127.0.0.1 is refused."""
    b = start(start_broker, EVERYTHING,
              connection={"Lan": {"ClientAddress": "127.0.0.2/31, [::1]"}})
    clients(b, proto, "near", bind_address="127.0.0.2")
    clients(b, proto, "far", bind_address="127.0.0.1", expect_reason=NOT_AUTHORIZED)


def test_client_id_substitution_gives_each_client_its_subtree(start_broker, clients, proto):
    """TopicPolicy `devices/${ClientID}/*`: dev1 subscribes to `devices/dev1/+` and receives
    its own publish; `devices/dev1/#` is refused (it also matches `devices/dev1`, which the
    policy does not allow), as are another client's topics and wildcards across clients."""
    b = start(start_broker, {"Own": {"Topic": "devices/${ClientID}/*", "ClientID": "*",
                                     "ActionList": "Publish,Subscribe"}})
    c = clients(b, proto, "dev1")
    assert c.subscribe("devices/dev1/+", 1) == [1]
    assert c.subscribe("devices/dev1/#", 1) == refused(proto)
    assert c.subscribe("devices/dev2/+", 1) == refused(proto)
    assert c.subscribe("devices/+/status", 1) == refused(proto)
    c.publish("devices/dev1/status", b"mine", 1)
    assert c.wait_messages(1)[0].payload == b"mine"
    publish_refused(c, "devices/dev2/status")


def test_mosquitto_clients_under_client_id_substitution(start_broker, procs, proto):
    """The same with mosquitto_sub and mosquitto_pub: dev7 subscribes under `devices/dev7/`;
    dev8's publish there, sent first, never arrives, while the operator's (`ops-*` may publish
    under `devices/`) does: the subscriber exits after its first message, which is ops-1's."""
    b = start(start_broker, {
        "Own": {"Topic": "devices/${ClientID}/*", "ClientID": "*",
                "ActionList": "Publish,Subscribe"},
        "Operators": {"Topic": "devices/*", "ClientID": "ops-*", "ActionList": "Publish"}})
    version = "5" if proto == V5 else "mqttv311"
    sub = mosquitto_sub(procs, b, "devices/dev7/+", "dev7", version=version, count=1)
    mosquitto_pub(b, "devices/dev7/cmd", "forged", "dev8", version=version)
    done = mosquitto_pub(b, "devices/dev7/cmd", "real", "ops-1", version=version)
    assert done.returncode == 0, done.stderr
    assert sub.finish() == 0
    assert [x for x in sub.lines if x.startswith("MSG")] == ["MSG 1 devices/dev7/cmd real"]


@pytest.mark.parametrize("attacker, filter_", [
    ("alice/PRIVILEGE", "MOBILEAPP/ACCOUNT/alice/PRIVILEGE/#"),
    ("#", "MOBILEAPP/ACCOUNT/#"),
    ("+", "MOBILEAPP/ACCOUNT/+/#"),
    ("a/+", "MOBILEAPP/ACCOUNT/a/+"),
], ids=["slash-privilege", "hash", "plus", "a-plus"])
def test_client_ids_that_are_not_one_level_reach_nothing(start_broker, clients, proto,
                                                        attacker, filter_):
    """Amlen's own warning (`MOBILEAPP/ACCOUNT/${ClientID}` and a client id ending in
    `/PRIVILEGE`) and ids that are wildcards: such an id matches no `${ClientID}` pattern, so
    its subscription is refused and alice's messages never reach it."""
    b = start(start_broker, {"Account": {"Topic": "MOBILEAPP/ACCOUNT/${ClientID}*",
                                         "ClientID": "*", "ActionList": "Publish,Subscribe"}})
    alice = clients(b, proto, "alice")
    assert alice.subscribe("MOBILEAPP/ACCOUNT/alice/#", 1) == [1]
    bad = clients(b, proto, attacker)
    assert bad.subscribe(filter_, 1) == refused(proto)
    alice.publish("MOBILEAPP/ACCOUNT/alice/PRIVILEGE/grant", b"admin", 1)
    alice.wait_messages(1)
    assert holds_for(lambda: not bad.received(), 0.3)
    publish_refused(bad, "MOBILEAPP/ACCOUNT/alice/PRIVILEGE/grant")


def test_literal_values_star_and_variable_text(start_broker, clients, proto):
    """A `*` in a client id is a literal character (Amlen's `policy*08.3` may use
    `/policy*08.3/dest10`, not `/policyX08.3/dest10`), and an id holding the text `${ClientID}`
    is that text: substitution happens once."""
    b = start(start_broker, {"Dest": {"Topic": "/${ClientID}/dest10", "ClientID": "*",
                                      "ActionList": "Publish,Subscribe"}})
    star = clients(b, proto, "policy*08.3")
    assert star.subscribe("/policy*08.3/dest10", 1) == [1]
    assert star.subscribe("/policyX08.3/dest10", 1) == refused(proto)
    text = clients(b, proto, "${ClientID}")
    assert text.subscribe("/${ClientID}/dest10", 1) == [1]
    assert text.subscribe("/anything/dest10", 1) == refused(proto)


def test_prefix_collision_client_a_and_topics_of_a_b(start_broker, clients, proto):
    """Under `t/${ClientID}*` client `a` owns `t/a` and `t/a/...`, never `t/ab`; client `ab`'s
    messages do not reach `a`; client `a/b` owns nothing, so it cannot publish into `t/a/b`."""
    b = start(start_broker, {"Own": {"Topic": "t/${ClientID}*", "ClientID": "*",
                                     "ActionList": "Publish,Subscribe"}})
    a = clients(b, proto, "a")
    assert a.subscribe("t/a/#", 1) == [1]
    assert a.subscribe("t/+", 1) == refused(proto)
    ab = clients(b, proto, "ab")
    ab.publish("t/ab/x", b"ab's", 1)
    a_b = clients(b, proto, "a/b")
    publish_refused(a_b, "t/a/b")
    a.publish("t/a/self", b"a's", 1)
    assert [m.payload for m in a.wait_messages(1)] == [b"a's"]
    assert holds_for(lambda: len(a.received()) == 1, 0.3)


@pytest.mark.parametrize("cert, own, foreign", [
    ("client", "certs/device-1/+", "certs/device-2/+"),
    ("wildcard", "certs/*.example.com/+", "certs/a.example.com/+"),
    ("slash", None, "certs/a/b/+"),
], ids=["device-1", "star-example-com", "slash"])
def test_common_name_substitution(start_broker, clients, pki, proto, cert, own, foreign):
    """TopicPolicy `certs/${CommonName}/*` with the TLS tests' client certificates: CN
    `device-1` reads its own subtree only; CN `*.example.com` is a literal name, not a pattern
    over `a.example.com`; CN `a/b` is two levels and reaches nothing."""
    b = start(start_broker, {"Certs": {"Topic": "certs/${CommonName}/*", "ClientID": "*",
                                       "ActionList": "Publish,Subscribe"}},
              endpoint=tls_endpoint(),
              objects=tls_objects(pki, client_certificates=True))
    c = clients(b, proto, f"cn-{cert}", tls=client_context(pki, cert))
    if own:
        assert c.subscribe(own, 1) == [1]
        c.publish(own.replace("+", "x"), b"mine", 1)
        assert c.wait_messages(1)[0].payload == b"mine"
    assert c.subscribe(foreign, 1) == refused(proto)


def test_sys_is_published_only_by_the_broker(broker, client, proto):
    """Under the demo policy (`*` for everyone), `$SYS` is neither readable (`*` grants no
    `$` topic) nor publishable (nobody but the broker publishes there)."""
    c = client(proto, "sys-curious")
    assert c.subscribe("$SYS/#", 1) == refused(proto)
    assert c.subscribe("$SYS/broker/+", 1) == refused(proto)
    publish_refused(c, "$SYS/broker/uptime", b"forged")


def test_sys_is_readable_where_a_policy_grants_it(start_broker, clients, proto):
    """A policy whose Topic starts with `$SYS` grants reading it to its clients (monitor-*);
    others are refused; even the monitor may not publish there."""
    b = start(start_broker, {
        "Monitor": {"Topic": "$SYS*", "ClientID": "monitor-*", "ActionList": "Publish,Subscribe"},
        **EVERYTHING})
    m = clients(b, proto, "monitor-1")
    assert m.subscribe("$SYS/#", 0) == [0]
    other = clients(b, proto, "other")
    assert other.subscribe("$SYS/#", 0) == refused(proto)
    publish_refused(m, "$SYS/broker/uptime")


WILL_POLICIES = {
    "Own": {"Topic": "status/${ClientID}", "ClientID": "*", "ActionList": "Publish"},
    "Read": {"Topic": "*", "ClientID": "*", "ActionList": "Subscribe"},
}


@pytest.mark.parametrize("will_topic, retain", [("status/victim", False),
                                                ("status/victim", True),
                                                ("$SYS/broker/down", False)],
                         ids=["other-client", "other-client-retained", "sys"])
def test_will_on_forbidden_topic_refuses_the_connect(start_broker, clients, proto, will_topic,
                                                    retain):
    """A will is authorised like a publish when the client connects: on a topic it may not
    publish to the CONNECT is refused (v5 0x87, v3 return code 5), so it can never be routed
    there; nothing arrives on that topic when the connection drops."""
    b = start(start_broker, WILL_POLICIES)
    watcher = clients(b, proto, "watcher")
    assert watcher.subscribe("status/#", 1) == [1]
    r = mqtt_raw.RawClient(b.host, b.port, proto)
    try:
        ack = r.connect("attacker", will={"topic": will_topic, "payload": b"forged",
                                          "retain": retain})
    finally:
        r.close()
    assert ack.reason == (NOT_AUTHORIZED if proto == V5 else V3_CONNACK_NOT_AUTHORIZED)
    assert holds_for(lambda: not watcher.received(), 0.3)


def test_will_on_own_topic_is_published(start_broker, clients, proto):
    """The allowed case: a will on the client's own topic is published when it drops."""
    b = start(start_broker, WILL_POLICIES)
    watcher = clients(b, proto, "watcher")
    watcher.subscribe("status/#", 1)
    r = mqtt_raw.RawClient(b.host, b.port, proto)
    try:
        assert r.connect("dev5", will={"topic": "status/dev5", "payload": b"offline"}).reason == 0
    finally:
        r.close()
    [msg] = watcher.wait_messages(1)
    assert (msg.topic, msg.payload) == ("status/dev5", b"offline")


def test_retained_message_on_forbidden_topic_is_not_stored(start_broker, clients, proto):
    """A retained PUBLISH is authorised like any other: on another client's topic it is
    refused and not stored; the owner's retained message is, and a later subscriber gets only
    that one."""
    b = start(start_broker, WILL_POLICIES)
    forger = clients(b, proto, "forger")
    publish_refused(forger, "status/owner", b"forged", retain=True)
    owner = clients(b, proto, "owner")
    owner.publish("status/owner", b"real", 1, retain=True)
    reader = clients(b, proto, "reader")
    reader.subscribe("status/#", 1)
    assert [m.payload for m in reader.wait_messages(1)] == [b"real"]
    assert holds_for(lambda: len(reader.received()) == 1, 0.3)


SHARES = {"AppA": {"Subscription": "A-*", "ClientID": "a-*", "ActionList": "Receive,Control"}}


@pytest.mark.parametrize("prefix", ["$share", "$SharedSubscription"])
def test_shared_group_of_another_application_is_refused(start_broker, clients, proto, prefix):
    """With a SubscriptionPolicy on the endpoint, application A's clients (`a-*`) create and
    join the `A-*` groups; b-1, whose TopicPolicy allows the filter, is refused A's group
    (both spellings) and receives none of its messages, though it may subscribe plainly."""
    b = start(start_broker, EVERYTHING, subscription=SHARES)
    worker = clients(b, proto, "a-1")
    assert worker.subscribe(f"{prefix}/A-jobs/jobs/#", 1) == [1]
    intruder = clients(b, proto, "b-1")
    assert intruder.subscribe(f"{prefix}/A-jobs/jobs/#", 1) == refused(proto)
    assert intruder.subscribe("$share/A-other/jobs/#", 1) == refused(proto)
    publisher = clients(b, proto, "pub")
    for i in range(4):
        publisher.publish("jobs/x", bytes([i]), 1)
    assert sorted(m.payload for m in worker.wait_messages(4)) == [bytes([i]) for i in range(4)]
    assert holds_for(lambda: not intruder.received(), 0.3)
    b.wait_log(r"subscribe refused: no SubscriptionPolicy allows it for this shared subscription")


def test_resumed_session_is_checked_again(start_broker, clients, proto):
    """A durable session subscribed to `secret/+` from 127.0.0.2 (the only address its policy
    allows) resumes from 127.0.0.1: the subscription is removed and the message queued for it
    meanwhile dropped, while `open/+` and its queued message stay."""
    b = start(start_broker, {
        "Lan": {"Topic": "secret/*", "ClientAddress": "127.0.0.2", "ActionList": "Subscribe"},
        "Open": {"Topic": "open/*", "ClientID": "*", "ActionList": "Subscribe"},
        "Publish": {"Topic": "*", "ClientID": "*", "ActionList": "Publish"}})
    roamer = clients(b, proto, "roamer", clean=False, session_expiry=600,
                     bind_address="127.0.0.2")
    assert roamer.subscribe("secret/+", 1) == [1]
    assert roamer.subscribe("open/+", 1) == [1]
    roamer.disconnect()
    p = clients(b, proto, "publisher")
    p.publish("secret/x", b"s1", 1)
    p.publish("open/x", b"o1", 1)
    moved = clients(b, proto, "roamer", clean=False, session_expiry=600,
                    bind_address="127.0.0.1", connect=False)
    assert moved.connect().session_present
    assert [m.payload for m in moved.wait_messages(1)] == [b"o1"]
    p.publish("secret/y", b"s2", 1)
    p.publish("open/y", b"o2", 1)
    moved.wait_messages(2)
    assert holds_for(lambda: moved.payloads() == [b"o1", b"o2"], 0.3), moved.payloads()
    b.wait_log(r"resumed session: subscription removed, no longer allowed.*secret/\+")


def test_refusals_are_logged_without_payloads(start_broker, clients):
    """The broker logs which policy refused what and why, and never the payload."""
    b = start(start_broker, {"Own": {"Topic": "devices/${ClientID}/*", "ClientID": "*",
                                     "ActionList": "Publish,Subscribe"}})
    c = clients(b, V5, "dev1")
    assert c.publish("devices/dev2/x", b"top-secret-payload", 1) == NOT_AUTHORIZED
    b.wait_log(r'publish refused.*TopicPolicy "Own": Topic "devices/\$\{ClientID\}/\*" does not '
               r'cover it')
    assert "top-secret-payload" not in b.log_text()
