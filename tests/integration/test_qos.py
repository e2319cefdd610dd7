"""QoS 0/1/2 in both directions: delivered QoS, packet flows, exactly-once."""

import pytest

import mqtt_raw as m
from helpers import V5


@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_delivered_qos_is_minimum_of_publish_and_subscription(broker, client, proto, pub_qos):
    """A message published at QoS p reaches subscribers at QoS 0, 1 and 2 with QoS min(p, s),
    and the publisher's paho on_publish fires with a success reason once PUBACK (QoS 1) or
    PUBCOMP (QoS 2) arrives. Three paho subscribers, one paho publisher, all on `proto`."""
    subs = []
    for sub_qos in (0, 1, 2):
        s = client(proto, f"sub{sub_qos}")
        assert s.subscribe("qos/t", sub_qos) == [sub_qos]
        subs.append(s)
    pub = client(proto, "pub")
    reason = pub.publish("qos/t", b"hello", pub_qos)
    assert reason == (None if pub_qos == 0 else 0)
    for sub_qos, s in enumerate(subs):
        [msg] = s.wait_messages(1)
        assert msg.payload == b"hello"
        assert msg.qos == min(pub_qos, sub_qos), (pub_qos, sub_qos)
        assert msg.retain is False


@pytest.mark.parametrize("qos", [1, 2])
def test_inbound_publish_flow_raw(broker, raw, client, proto, qos):
    """A raw publisher sees the server side of the flow byte for byte: QoS 1 PUBLISH -> PUBACK
    with the same packet id; QoS 2 PUBLISH -> PUBREC, PUBREL -> PUBCOMP. The message then
    reaches a subscriber once."""
    sub = client(proto, "sub")
    sub.subscribe("flow/in", 2)
    r = raw(proto)
    assert r.connect("raw-pub").reason == 0
    r.publish("flow/in", b"payload", qos=qos, packet_id=0x1234)
    if qos == 1:
        ack = r.expect(m.PUBACK)
        assert ack.packet_id == 0x1234 and ack.reason == 0
    else:
        rec = r.expect(m.PUBREC)
        assert rec.packet_id == 0x1234 and rec.reason == 0
        r.ack(m.PUBREL, 0x1234)
        comp = r.expect(m.PUBCOMP)
        assert comp.packet_id == 0x1234 and comp.reason == 0
    [msg] = sub.wait_messages(1)
    assert (msg.payload, msg.qos) == (b"payload", qos)


@pytest.mark.parametrize("qos", [1, 2])
def test_outbound_publish_flow_raw(broker, raw, client, proto, qos):
    """A raw subscriber sees the client side of the flow: QoS 1 PUBLISH (non-zero packet id,
    DUP 0) which it PUBACKs; QoS 2 PUBLISH -> it sends PUBREC -> server sends PUBREL with the
    same id and the mandatory flags 0b0010 -> it sends PUBCOMP. A second message afterwards
    arrives normally, which shows the server completed the first flow."""
    r = raw(proto)
    r.connect("raw-sub")
    assert r.subscribe([("flow/out", m.sub_options(qos))]).reasons == [qos]
    pub = client(proto, "pub")
    for n, payload in enumerate([b"first", b"second"]):
        pub.publish("flow/out", payload, qos)
        p = r.expect(m.PUBLISH)
        assert (p.topic, p.payload, p.qos, p.dup) == ("flow/out", payload, qos, False)
        assert p.packet_id and p.packet_id > 0
        if qos == 1:
            r.ack(m.PUBACK, p.packet_id)
        else:
            r.ack(m.PUBREC, p.packet_id)
            rel = r.expect(m.PUBREL)
            assert rel.packet_id == p.packet_id
            assert rel.flags == 0b0010
            r.ack(m.PUBCOMP, p.packet_id)


def test_qos2_duplicate_publish_delivered_exactly_once(broker, raw, client, proto):
    """QoS 2 is exactly once: a raw publisher sends PUBLISH id 7, gets PUBREC, re-sends the same
    PUBLISH with DUP=1 before PUBREL (as after a lost PUBREC), gets PUBREC again, then
    PUBREL -> PUBCOMP. A QoS 2 subscriber receives the message once. To know when to count, the
    publisher then sends a marker on the same topic at the same QoS; messages of one publisher on
    one topic and QoS arrive in order, so once the marker is in, any duplicate would be too."""
    sub = client(proto, "sub")
    sub.subscribe("eo/t", 2)
    r = raw(proto)
    r.connect("raw-pub")
    r.publish("eo/t", b"once", qos=2, packet_id=7)
    assert r.expect(m.PUBREC).packet_id == 7
    r.publish("eo/t", b"once", qos=2, packet_id=7, dup=True)
    assert r.expect(m.PUBREC).packet_id == 7
    r.ack(m.PUBREL, 7)
    assert r.expect(m.PUBCOMP).packet_id == 7
    r.publish("eo/t", b"marker", qos=2, packet_id=8)
    assert r.expect(m.PUBREC).packet_id == 8
    r.ack(m.PUBREL, 8)
    assert r.expect(m.PUBCOMP).packet_id == 8
    sub.wait_messages(2)
    assert sub.payloads() == [b"once", b"marker"]


def test_qos1_publish_without_subscribers_is_acknowledged(broker, raw, proto):
    """A QoS 1 PUBLISH to a topic nobody subscribes to is still acknowledged: PUBACK with the
    packet id; in v5 the reason is 0x00 (Success) or 0x10 (No matching subscribers), both
    allowed by the spec."""
    r = raw(proto)
    r.connect("lonely")
    r.publish("nobody/home", b"x", qos=1, packet_id=3)
    ack = r.expect(m.PUBACK)
    assert ack.packet_id == 3
    assert ack.reason in ((0x00, 0x10) if proto == V5 else (0x00,))
