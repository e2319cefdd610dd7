"""Shared subscriptions: `$share/{group}/{filter}` and MessageSight's
`$SharedSubscription/{group}/{filter}` deliver each message to one member of the group."""

import pytest

import mqtt_raw as m
from helpers import wait_for

FORMS = [
    pytest.param("$share/g/sh/t", id="share"),
    pytest.param("$SharedSubscription/g/sh/t", id="SharedSubscription", marks=pytest.mark.
                 ironsight_only(reason="MessageSight's $SharedSubscription form is not "
                                       "supported by Mosquitto")),
]
N = 20


@pytest.mark.parametrize("shared", FORMS)
def test_shared_subscription_delivers_each_message_once(broker, client, proto, shared):
    """Two members of group g and one ordinary subscriber on sh/t; 20 QoS 1 messages: each
    message reaches exactly one member (the members' payloads are disjoint and together are
    all 20), both members get some (spec 4.8.2), and the ordinary subscriber gets all 20."""
    members = []
    for i in range(2):
        c = client(proto, f"member{i}")
        assert c.subscribe(shared, 1) == [1]
        members.append(c)
    plain = client(proto, "plain")
    plain.subscribe("sh/t", 1)
    pub = client(proto, "pub")
    sent = [f"m{i}".encode() for i in range(N)]
    for payload in sent:
        pub.publish("sh/t", payload, 1)
    assert sorted(plain.wait_messages(N) and plain.payloads()) == sorted(sent)
    wait_for(lambda: sum(len(c.received()) for c in members) >= N, message="20 shared")
    a, b = (c.payloads() for c in members)
    assert sorted(a + b) == sorted(sent), "each message exactly once across the group"
    assert a and b, f"both members should get some: {len(a)} / {len(b)}"
    assert all(msg.topic == "sh/t" for c in members for msg in c.received())


@pytest.mark.ironsight_only(reason="Mosquitto 2.0 drops the messages in flight to a shared "
                            "member whose session ends instead of handing them to the group")
def test_shared_member_leaving_hands_messages_to_group(broker, raw, client, proto):
    """When a member of a QoS 1 group has messages in flight (sent, not acknowledged) and its
    session ends, those messages go to the remaining member: none is lost (spec 4.8.2, "the
    Server SHOULD send the Application Message to another Client ..."). Member A is a raw
    client with a non-persistent session that never acks; member B is paho. After A closes,
    B has received every one of the 10 messages."""
    a = raw(proto)
    a.connect("member-a")  # clean session / clean start, expiry 0: ends with the connection
    assert a.subscribe([("$share/g/hand/t", m.sub_options(1))]).reasons == [1]
    b = client(proto, "member-b")
    b.subscribe("$share/g/hand/t", 1)
    pub = client(proto, "pub")
    sent = [f"h{i}".encode() for i in range(10)]
    for payload in sent:
        pub.publish("hand/t", payload, 1)
    got_a = []

    def all_sent_out():
        try:
            got_a.append(a.recv(timeout=0.05))
        except TimeoutError:
            pass
        return len(got_a) + len(b.received()) >= len(sent)

    wait_for(all_sent_out, message="all 10 messages sent to A or B")
    assert got_a, "A should have been given some of the messages"
    assert all(p.type == m.PUBLISH for p in got_a)
    a.close()
    wait_for(lambda: sorted(b.payloads()) == sorted(sent), timeout=10,
             message=lambda: f"B to hold all 10, has {sorted(b.payloads())}")


@pytest.mark.ironsight_only(reason="MessageSight's $SharedSubscription form is not supported "
                                   "by Mosquitto")
def test_both_share_spellings_are_one_subscription(broker, raw, client, proto):
    """`$share/g/sh/t` and `$SharedSubscription/g/sh/t` name one subscription: a session that
    subscribes with both gets each message once, and ends cleanly (this once crashed the
    broker); the group then still works for a new member."""
    r = raw(proto)
    r.connect("both-forms")
    r.subscribe([("$share/g/sh/t", m.sub_options(1)),
                 ("$SharedSubscription/g/sh/t", m.sub_options(1))])
    pub = client(proto, "pub")
    pub.publish("sh/t", b"once", 1)
    first = r.recv()
    assert (first.type, first.payload) == (m.PUBLISH, b"once")
    r.ack(m.PUBACK, first.packet_id)
    assert r.no_packet_within(0.3), "delivered once, not once per spelling"
    r.disconnect()
    assert r.recv_until_closed() == []
    member = client(proto, "member")
    assert member.subscribe("$share/g/sh/t", 1) == [1]
    pub.publish("sh/t", b"after", 1)
    assert member.wait_messages(1)[0].payload == b"after"
