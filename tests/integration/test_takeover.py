"""Session takeover: a second connection with the same client id replaces the first."""

import pytest

import mqtt_raw as m
from helpers import V5, V311, holds_for, wait_for


def persistent(proto):
    props = {"session_expiry_interval": 60} if proto == V5 else None
    return {"clean": False, "props": props}


@pytest.mark.parametrize("proto", [V311, pytest.param(V5, marks=pytest.mark.ironsight_only(
    reason="Mosquitto 2.0.11 closes the old v5 connection without DISCONNECT 0x8E"))],
    ids=["v311", "v5"])
def test_takeover_closes_first_connection(broker, raw, proto):
    """A second CONNECT with the same client id is accepted and the first connection is closed
    [MQTT-3.1.4-3 (v5) / MQTT-3.1.4-2 (3.1.1)]; in v5 the first connection receives DISCONNECT
    0x8E (Session taken over) before the close. The new connection still works (PINGREQ)."""
    first = raw(proto)
    assert first.connect("twin").reason == 0
    second = raw(proto)
    assert second.connect("twin").reason == 0
    packets = first.recv_until_closed()
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x8E)]
    else:
        assert packets == []
    second.send(m.pingreq())
    second.expect(m.PINGRESP)


def test_takeover_publishes_old_will_exactly_once(broker, raw, client, proto):
    """The taken-over connection's will (Will Delay 0) is published exactly once (v5 spec
    3.1.4 and 3.1.2.5: the old connection ended without DISCONNECT 0x00). The watcher gets the
    old will; the new connection's own will is not published; a marker published afterwards
    arrives, and no second copy of the will follows within a short window."""
    watcher = client(proto, "watcher")
    watcher.subscribe("tw/will", 1)
    first = raw(proto)
    first.connect("twin", will={"topic": "tw/will", "payload": b"old", "qos": 1})
    second = raw(proto)
    second.connect("twin", will={"topic": "tw/will", "payload": b"new", "qos": 1})
    first.recv_until_closed()
    watcher.wait_messages(1)
    client(proto, "pub").publish("tw/will", b"marker", 1)
    wait_for(lambda: b"marker" in watcher.payloads())
    assert holds_for(lambda: watcher.payloads() == [b"old", b"marker"], 0.3), \
        watcher.payloads()


def test_takeover_keeps_inflight_messages(broker, raw, client, proto):
    """In-flight state survives a takeover with clean session / clean start 0: the first
    connection (persistent session, QoS 1 subscription) receives a PUBLISH and does not ack;
    the second connection gets session present 1 and the same message again with DUP=1 and the
    same packet id [MQTT-4.4.0-1]."""
    first = raw(proto)
    first.connect("twin", **persistent(proto))
    first.subscribe([("tk/t", m.sub_options(1))])
    client(proto, "pub").publish("tk/t", b"in flight", 1)
    original = first.expect(m.PUBLISH)
    second = raw(proto)
    assert second.connect("twin", **persistent(proto)).session_present is True
    first.recv_until_closed()
    again = second.expect(m.PUBLISH)
    assert (again.payload, again.dup, again.packet_id) == (b"in flight", True,
                                                           original.packet_id)
    second.ack(m.PUBACK, again.packet_id)
