"""Persistent sessions: session present, redelivery after reconnect, offline queueing, clean
session / clean start, and v5 Session Expiry Interval (set in CONNECT, changed in DISCONNECT)."""

import time

import pytest

import mqtt_raw as m
from helpers import V5, holds_for

# How a raw client asks for a persistent session: v3.1.1 clean session 0; v5 clean start 0
# plus a Session Expiry Interval (otherwise the session ends at disconnect).
PERSIST_S = 60


def persistent(proto):
    """Keyword arguments for helpers.Client that make a persistent session on `proto`."""
    return {"clean": False, "session_expiry": PERSIST_S if proto == V5 else None}


def raw_persistent(proto):
    """Keyword arguments for RawClient.connect that make a persistent session on `proto`."""
    props = {"session_expiry_interval": PERSIST_S} if proto == V5 else None
    return {"clean": False, "props": props}


def test_session_present_flag(broker, client, proto):
    """CONNACK session present is 0 for a new persistent session, 1 when reconnecting to it,
    and 0 when connecting with clean session / clean start 1, which discards it [MQTT-3.2.2-2,
    MQTT-3.2.2-3]. What the clean connection leaves behind differs: a v3.1.1 clean session ends
    at disconnect, while a v5 clean start with Session Expiry Interval 60 starts a new session
    that outlives the connection, so the last reconnect finds it only in v5. paho client."""
    c = client(proto, "sp", connect=False, **persistent(proto))
    assert c.connect().session_present is False
    c.subscribe("sp/t", 1)
    assert c.reconnect().session_present is True
    assert c.reconnect(clean=True).session_present is False
    assert c.reconnect(clean=False).session_present is (proto == V5)


@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_publish_redelivered_with_dup_after_reconnect(broker, raw, client, proto, qos):
    """A persistent subscriber whose raw client receives a QoS 1/2 PUBLISH, does not acknowledge
    it and drops the connection gets it again after reconnecting: CONNACK session present 1,
    then the same PUBLISH with DUP=1 and the original packet id [MQTT-4.4.0-1, MQTT-3.3.1-1]."""
    r = raw(proto)
    assert r.connect("redeliver", **raw_persistent(proto)).session_present is False
    r.subscribe([("rd/t", m.sub_options(qos))])
    client(proto, "pub").publish("rd/t", b"unacked", qos)
    first = r.expect(m.PUBLISH)
    assert (first.payload, first.qos, first.dup) == (b"unacked", qos, False)
    r.close()  # no PUBACK / PUBREC, no DISCONNECT

    r2 = raw(proto)
    assert r2.connect("redeliver", **raw_persistent(proto)).session_present is True
    again = r2.expect(m.PUBLISH)
    assert (again.payload, again.qos, again.dup) == (b"unacked", qos, True)
    assert again.packet_id == first.packet_id
    if qos == 1:
        r2.ack(m.PUBACK, again.packet_id)
    else:
        r2.ack(m.PUBREC, again.packet_id)
        assert r2.expect(m.PUBREL).packet_id == again.packet_id
        r2.ack(m.PUBCOMP, again.packet_id)


def test_pubrel_resent_after_reconnect(broker, raw, client, proto):
    """A QoS 2 flow interrupted after the subscriber's PUBREC resumes at PUBREL: the raw client
    receives PUBLISH, sends PUBREC, receives PUBREL, drops without PUBCOMP; after reconnecting
    it receives PUBREL again with the same packet id, and not the PUBLISH [MQTT-4.4.0-1]."""
    r = raw(proto)
    r.connect("pubrel", **raw_persistent(proto))
    r.subscribe([("rel/t", m.sub_options(2))])
    client(proto, "pub").publish("rel/t", b"q2", 2)
    p = r.expect(m.PUBLISH)
    r.ack(m.PUBREC, p.packet_id)
    assert r.expect(m.PUBREL).packet_id == p.packet_id
    r.close()

    r2 = raw(proto)
    assert r2.connect("pubrel", **raw_persistent(proto)).session_present is True
    rel = r2.expect(m.PUBREL)
    assert rel.packet_id == p.packet_id
    r2.ack(m.PUBCOMP, p.packet_id)
    # Nothing else is owed: a PINGREQ is answered and no PUBLISH comes before the PINGRESP.
    r2.send(m.pingreq())
    assert r2.expect(m.PINGRESP)


def test_offline_messages_queued_qos1_qos2_not_qos0(broker, client, proto):
    """Messages published while a persistent session is offline are delivered when it
    reconnects if they are QoS 1 or 2; QoS 0 messages are not queued for offline sessions.
    The subscriber (QoS 2) disconnects; the publisher sends q0, q1, q2; on reconnect the
    subscriber gets q1 and q2 at their QoS. A live marker published after the reconnect arrives
    after anything queued, so once it is in, q0 would have been too."""
    sub = client(proto, "offline", connect=False, **persistent(proto))
    sub.connect()
    sub.subscribe("off/t", 2)
    sub.disconnect()
    pub = client(proto, "pub")
    for qos in (0, 1, 2):
        pub.publish("off/t", f"q{qos}".encode(), qos)
    assert sub.reconnect().session_present is True
    sub.wait_messages(2)
    pub.publish("off/t", b"marker", 2)
    sub.wait_messages(3)
    got = {msg.payload: msg.qos for msg in sub.received()}
    assert got == {b"q1": 1, b"q2": 2, b"marker": 2}


def test_clean_start_discards_queued_messages(broker, client, proto):
    """Connecting with clean session / clean start 1 discards the old session and what was
    queued for it: session present 0, and the message queued while offline never arrives (a
    marker on a fresh subscription arrives instead)."""
    sub = client(proto, "cleaner", connect=False, **persistent(proto))
    sub.connect()
    sub.subscribe("cl/t", 1)
    sub.disconnect()
    pub = client(proto, "pub")
    pub.publish("cl/t", b"stale", 1)
    assert sub.reconnect(clean=True).session_present is False
    sub.subscribe("cl/t", 1)
    pub.publish("cl/t", b"fresh", 1)
    sub.wait_messages(1)
    assert sub.payloads() == [b"fresh"]


def test_v5_session_expiry_zero_ends_session_at_disconnect(broker, client):
    """v5 with clean start 0 but no Session Expiry Interval (0): the session ends when the
    connection closes, so reconnecting with clean start 0 finds none (session present 0) and
    the old subscription does not deliver [MQTT-3.1.2-23]."""
    c = client(V5, "exp0", connect=False, clean=False, session_expiry=0)
    c.connect()
    c.subscribe("e0/t", 1)
    c.disconnect()
    assert c.reconnect().session_present is False
    pub = client(V5, "pub")
    pub.publish("e0/t", b"nobody", 1)
    c.subscribe("e0/marker", 1)
    pub.publish("e0/marker", b"marker", 1)
    c.wait_messages(1)
    assert c.payloads() == [b"marker"]


def test_v5_session_expiry_keeps_session_then_drops_it(broker, client):
    """Session Expiry Interval 1 s keeps the session across a quick reconnect (session
    present 1, subscription delivers), and 1 s after the last disconnect it is gone: session
    present 0 and the subscription no longer delivers. Timing test: waits 2.5 s."""
    c = client(V5, "exp1", connect=False, clean=False, session_expiry=1)
    c.connect()
    c.subscribe("e1/t", 1)
    c.disconnect()
    assert c.reconnect().session_present is True
    pub = client(V5, "pub")
    pub.publish("e1/t", b"kept", 1)
    c.wait_messages(1)
    c.disconnect()
    time.sleep(2.5)  # the expiry itself is under test
    assert c.reconnect().session_present is False
    c.clear()
    pub.publish("e1/t", b"after expiry", 1)
    c.subscribe("e1/marker", 1)
    pub.publish("e1/marker", b"marker", 1)
    c.wait_messages(1)
    assert c.payloads() == [b"marker"]


def test_v5_disconnect_can_shorten_session_expiry(broker, raw):
    """The Session Expiry Interval in DISCONNECT replaces the one from CONNECT (spec
    3.14.2.2.2): CONNECT with 60 s, DISCONNECT with 0 ends the session now, so the next
    clean-start-0 connection gets session present 0."""
    r = raw(5)
    r.connect("shorten", clean=False, props={"session_expiry_interval": 60})
    r.disconnect(0, {"session_expiry_interval": 0})
    assert r.recv_until_closed() == []
    r2 = raw(5)
    assert r2.connect("shorten", clean=False,
                      props={"session_expiry_interval": 60}).session_present is False


def test_v5_disconnect_can_lengthen_session_expiry(broker, raw):
    """CONNECT with Session Expiry Interval 1, DISCONNECT with 60: the session outlives the
    original 1 s, so reconnecting after 2.5 s finds it (session present 1). Timing test."""
    r = raw(5)
    r.connect("lengthen", clean=False, props={"session_expiry_interval": 1})
    r.disconnect(0, {"session_expiry_interval": 60})
    assert r.recv_until_closed() == []
    time.sleep(2.5)
    r2 = raw(5)
    assert r2.connect("lengthen", clean=False,
                      props={"session_expiry_interval": 60}).session_present is True


def test_v5_disconnect_expiry_from_zero_is_protocol_error(broker, raw):
    """If CONNECT had Session Expiry Interval 0, a DISCONNECT that sets it non-zero is a Protocol
    Error (spec 3.14.2.2.2): the server answers DISCONNECT 0x82 and closes, and the session is
    not kept (reconnecting with clean start 0 gives session present 0)."""
    r = raw(5)
    r.connect("zero-to-ten", clean=False)
    r.disconnect(0, {"session_expiry_interval": 10})
    packets = r.recv_until_closed()
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x82)]
    r2 = raw(5)
    assert r2.connect("zero-to-ten", clean=False).session_present is False


def test_v311_persistent_session_keeps_subscription(broker, client):
    """A v3.1.1 clean session 0 session keeps its subscription across reconnects: after a
    reconnect without re-subscribing, a publish still reaches it."""
    c = client(4, "keep311", connect=False, clean=False)
    c.connect()
    c.subscribe("k/t", 1)
    c.disconnect()
    assert c.reconnect().session_present is True
    client(4, "pub").publish("k/t", b"still here", 1)
    assert c.wait_messages(1)[0].payload == b"still here"
    assert holds_for(lambda: len(c.received()) == 1, 0.2)
