"""Configured limits: the per-session queue (MaxMessages with RejectNewMessages or
DiscardOldMessages) and the maximum packet size in both directions."""

import pytest

import mqtt_raw as m
from helpers import V5, V311, healthy, holds_for, wait_for

LIMIT = 10
SENT = [str(i).encode() for i in range(15)]


def offline_subscriber(broker, client, proto, name):
    """A persistent paho session subscribed to q/t at QoS 1, disconnected."""
    c = client(proto, name, connect=False, clean=False,
               session_expiry=60 if proto == V5 else None)
    c.connect()
    c.subscribe("q/t", 1)
    c.disconnect()
    return c


def publish_all(client, proto):
    """Publish the 15 messages at QoS 1, each acknowledged; return the ack reason codes."""
    pub = client(proto, "pub")
    return pub, [pub.publish("q/t", payload, 1) for payload in SENT]


def drain(sub, pub, expected):
    """Reconnect `sub`, collect what was queued, and return the payloads. A live marker is
    published after the reconnect: it is queued behind everything that was kept, so once it
    arrives nothing more is owed."""
    assert sub.reconnect().session_present is True
    sub.wait_messages(expected)
    pub.publish("q/t", b"marker", 1)
    wait_for(lambda: b"marker" in sub.payloads())
    return [p for p in sub.payloads() if p != b"marker"]


@pytest.mark.broker_config(max_messages=LIMIT, behavior="RejectNewMessages")
def test_queue_limit_reject_new_keeps_first_messages(broker, client, proto):
    """MaxMessages 10 with RejectNewMessages: an offline persistent subscriber gets, on
    reconnect, the FIRST 10 of 15 QoS 1 messages. Every publish is still acknowledged; a
    v3.1.1 publisher gets a plain PUBACK, and a v5 publisher's first 10 PUBACKs are Success
    (the others are checked in the next test)."""
    sub = offline_subscriber(broker, client, proto, "offline")
    pub, acks = publish_all(client, proto)
    assert acks[:LIMIT] == [0] * LIMIT
    if proto == V311:
        assert acks == [0] * len(SENT)
    assert drain(sub, pub, LIMIT) == SENT[:LIMIT]


@pytest.mark.ironsight_only(reason="Mosquitto 2.0 acknowledges a message it could not queue "
                            "with Success, not 0x97")
@pytest.mark.broker_config(max_messages=LIMIT, behavior="RejectNewMessages")
def test_queue_limit_reject_new_v5_puback_quota_exceeded(broker, client):
    """With RejectNewMessages, a v5 QoS 1 publisher whose message could not be queued for a
    subscriber gets PUBACK reason 0x97 (Quota exceeded) for that message: Success for the first
    10, 0x97 for the last 5."""
    offline_subscriber(broker, client, V5, "offline")
    _, acks = publish_all(client, V5)
    assert acks == [0x00] * LIMIT + [0x97] * (len(SENT) - LIMIT)


@pytest.mark.ironsight_only(reason="Mosquitto has no DiscardOldMessages policy")
@pytest.mark.broker_config(max_messages=LIMIT, behavior="DiscardOldMessages")
def test_queue_limit_discard_old_keeps_last_messages(broker, client, proto):
    """MaxMessages 10 with DiscardOldMessages: the offline subscriber gets the LAST 10 of 15,
    and every publish is acknowledged with Success (nothing was refused)."""
    sub = offline_subscriber(broker, client, proto, "offline")
    pub, acks = publish_all(client, proto)
    assert acks == [0] * len(SENT)
    assert drain(sub, pub, LIMIT) == SENT[-LIMIT:]


@pytest.mark.broker_config(max_messages=LIMIT, behavior="RejectNewMessages")
def test_queue_limit_counts_per_session(broker, client, proto):
    """The limit is per session, not shared: two offline subscribers each get their own first
    10 of the same 15 messages."""
    subs = [offline_subscriber(broker, client, proto, f"offline{i}") for i in range(2)]
    pub, _ = publish_all(client, proto)
    for sub in subs:
        assert drain(sub, pub, LIMIT) == SENT[:LIMIT]


# ---- maximum packet size ---------------------------------------------------------------------

@pytest.mark.broker_config(max_packet="1KB")
def test_publish_over_max_message_size_closes_connection(broker, raw, client, proto):
    """With MaxMessageSize 1KB the v5 CONNACK announces a Maximum Packet Size between 1 KiB and
    the 4 KB test packet (spec 3.2.2.3.6). A 100-byte message passes; a PUBLISH with a 4000-byte
    payload gets v5 DISCONNECT 0x95 (Packet too large) / v3.1.1 a plain close (spec
    3.2.2.3.6), and is not delivered. The broker then serves a healthy client."""
    watcher = client(proto, "watcher")
    watcher.subscribe("big/t", 0)
    r = raw(proto)
    ack = r.connect("big-sender")
    if proto == V5:
        assert 1024 <= ack.props.get("maximum_packet_size", 0) < 4000
    r.publish("big/t", b"s" * 100, qos=1, packet_id=1)
    assert r.expect(m.PUBACK).packet_id == 1
    r.publish("big/t", b"B" * 4000, qos=1, packet_id=2)
    packets = r.recv_until_closed()
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x95)]
    else:
        assert packets == []
    watcher.wait_messages(1)
    assert holds_for(lambda: [len(p) for p in watcher.payloads()] == [100], 0.2)
    healthy(broker, proto)


def test_client_maximum_packet_size_respected(broker, raw, client):
    """A v5 client announcing Maximum Packet Size 256 never receives a larger packet
    [MQTT-3.1.2-25]: a 1000-byte message is dropped for that client only (another subscriber
    gets it), the connection stays up, and a later small message arrives."""
    small = raw(V5)
    small.connect("small", props={"maximum_packet_size": 256})
    small.subscribe([("mps/t", m.sub_options(1))])
    big = client(V5, "big")
    big.subscribe("mps/t", 1)
    pub = client(V5, "pub")
    pub.publish("mps/t", b"L" * 1000, 1)
    pub.publish("mps/t", b"tiny", 1)
    p = small.expect(m.PUBLISH)
    assert p.payload == b"tiny"
    assert len(p.raw) <= 256
    small.ack(m.PUBACK, p.packet_id)
    assert [len(x) for x in big.wait_messages(2) and big.payloads()] == [1000, 4]
    small.send(m.pingreq())
    small.expect(m.PINGRESP)
