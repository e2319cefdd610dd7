"""Keep alive: the server closes a silent client after 1.5 x its keep alive (v5 with DISCONNECT
0x8D) and publishes its will; keep alive 0 disables the check; a configured Server Keep Alive
is announced in the v5 CONNACK and enforced. These tests are about time, so they wait, with
keep alive 1-2 s."""

import time

import pytest

import mqtt_raw as m
from helpers import V5


@pytest.mark.ironsight_only(reason="Mosquitto 2.0 checks keep alive on a ~5 s timer (a 1 s "
                            "keep alive closes after ~6 s) and sends no DISCONNECT 0x8D")
def test_silent_client_disconnected_after_one_and_a_half_keepalives(broker, raw, proto):
    """A raw client with keep alive 1 s that sends nothing after CONNECT is disconnected
    [MQTT-3.1.2-24 (3.1.1) / MQTT-3.1.2-22 (v5)] on time: not before 1 s, and within 3.5 s
    (1.5 s plus slack for a 1 s timer tick). v5 receives DISCONNECT 0x8D (Keep Alive timeout)
    before the close; v3.1.1 just sees the close."""
    r = raw(proto)
    r.connect("sleepy", keepalive=1)
    start = time.monotonic()
    packets = r.recv_until_closed(timeout=3.5)
    elapsed = time.monotonic() - start
    assert elapsed >= 1.0, f"closed after {elapsed:.2f}s, before one keep alive"
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x8D)]
    else:
        assert packets == []


def test_keepalive_timeout_publishes_will(broker, raw, client, proto):
    """A client that goes silent past its keep alive (1 s) is closed by the server and its will
    is published [MQTT-3.1.2-8]. The bound here is loose (10 s) so that it also holds for
    Mosquitto's coarse timer; the tight bound is the test above. If anything arrives before the
    close it is a v5 DISCONNECT 0x8D."""
    watcher = client(proto, "watcher")
    watcher.subscribe("ka/will", 1)
    r = raw(proto)
    r.connect("sleepy", keepalive=1, will={"topic": "ka/will", "payload": b"timed out"})
    packets = r.recv_until_closed(timeout=10)
    assert [(p.type, p.reason) for p in packets] in ([], [(m.DISCONNECT, 0x8D)])
    assert proto == V5 or packets == []
    assert watcher.wait_messages(1)[0].payload == b"timed out"


def test_pingreq_keeps_connection_alive(broker, raw, proto):
    """A client with keep alive 1 s that sends PINGREQ every 0.5 s stays connected for 3 s
    (twice the 1.5 s deadline), each PINGREQ answered by PINGRESP [MQTT-3.12.4-1]."""
    r = raw(proto)
    r.connect("pinger", keepalive=1)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        r.send(m.pingreq())
        assert r.expect(m.PINGRESP, timeout=1).raw == b"\xd0\x00"
        time.sleep(0.5)  # the client's ping period is what is being exercised


def test_keepalive_zero_disables_timeout(broker, raw, proto):
    """Keep alive 0 turns the mechanism off (spec 3.1.2.10): a client silent for 3 s is still
    connected and its PINGREQ is answered. (The default config has no Server Keep Alive, so the
    server imposes none; Mosquitto announces Server Keep Alive 65535, which changes nothing.)"""
    r = raw(proto)
    r.connect("forever", keepalive=0)
    assert r.no_packet_within(3.0)
    r.send(m.pingreq())
    r.expect(m.PINGRESP)


@pytest.mark.ironsight_only(reason="Mosquitto's max_keepalive cannot be set below 10 s")
@pytest.mark.broker_config(server_keepalive=2)
def test_v5_server_keepalive_announced_and_enforced(broker, raw):
    """With "ServerKeepAlive": 2, a v5 client asking for keep alive 60 gets CONNACK Server Keep
    Alive = 2 [MQTT-3.2.2-21] and the server then holds it to 2 s: silent, it is disconnected
    with DISCONNECT 0x8D after more than 2 s and within 5 s (1.5 x 2 plus slack)."""
    r = raw(V5)
    ack = r.connect("told-to-ping", keepalive=60)
    assert ack.props.get("server_keep_alive") == 2
    start = time.monotonic()
    packets = r.recv_until_closed(timeout=5)
    assert time.monotonic() - start >= 2.0
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x8D)]
