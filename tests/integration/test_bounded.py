"""Bounded work per packet, black box: the size a peer may declare before its CONNECT is
accepted (Endpoint.MaxConnectMessageSize), the time a packet may take to arrive whole
(Broker.PacketTimeout), and a hostile SUBSCRIBE as large as the limits allow, which must not
take the broker down or stop it serving its other clients. Raw bytes, since real clients
neither send oversized CONNECTs nor trickle packets."""

from __future__ import annotations

import threading
import time

import pytest

import mqtt_raw as m
from helpers import V5

pytestmark = pytest.mark.ironsight_only(
    reason="MaxConnectMessageSize and PacketTimeout are ironsight's; Mosquitto has neither")


def token_connect(proto: int, size: int, client_id: str = "big") -> bytes:
    """A CONNECT of about `size` bytes: a token as password and a will with a large payload
    (each MQTT binary field holds at most 65,535 bytes)."""
    will = {"topic": "will", "payload": b"w" * (size // 2)}
    return m.connect(client_id, version=proto, username="user", password=b"p" * (size // 2),
                     will=will)


def test_connect_over_the_default_size_before_connect_is_refused(broker, proto):
    """By default a CONNECT may have 64 KB: one of 70 KB is refused, in v5 with CONNACK 0x95
    (Packet too large) before the close, in 3.1.1 with a close (it has no such code); one of
    60 KB with a will and a password connects."""
    big = m.RawClient(broker.host, broker.port, proto)
    big.send(token_connect(proto, 70 * 1024))
    packets = big.recv_until_closed()
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.CONNACK, 0x95)], packets
    else:
        assert packets == []
    fits = m.RawClient(broker.host, broker.port, proto)
    fits.send(token_connect(proto, 60 * 1024, "fits"))
    assert fits.expect(m.CONNACK).reason == 0
    big.close()
    fits.close()


def test_the_size_before_connect_is_configurable_and_then_the_message_size_applies(
        start_broker, proto):
    """With MaxConnectMessageSize 2KB a 3 KB CONNECT is refused from its header, while after a
    small CONNECT the endpoint's MaxMessageSize applies: a 100 KB PUBLISH goes through."""
    broker = start_broker(endpoint={"MaxConnectMessageSize": "2KB"})
    big = m.RawClient(broker.host, broker.port, proto)
    big.send(token_connect(proto, 3 * 1024)[:100])   # the header declares 3 KB: enough
    packets = big.recv_until_closed()
    assert [(p.type, p.reason) for p in packets] == ([(m.CONNACK, 0x95)] if proto == V5 else [])
    c = m.RawClient(broker.host, broker.port, proto)
    assert c.connect("small").reason == 0
    assert c.subscribe("t").reasons == [0]
    c.publish("t", b"x" * 100_000)
    assert len(c.expect(m.PUBLISH).payload) == 100_000
    big.close()
    c.close()


PACKET_TIMEOUT_S = 2


def started_publish(proto: int) -> bytes:
    """The first bytes of a QoS 0 PUBLISH that declares 4,000,000 bytes."""
    return m.publish("t", b"x" * 4_000_000, version=proto)


def test_a_trickled_publish_is_cut_at_the_packet_timeout(start_broker, proto):
    """A client without keep alive that trickles a 4 MB PUBLISH at 100 bytes a second is cut
    once the packet is PacketTimeout (2 s) old, on the next tick (1 s), not before: a v5
    client reads DISCONNECT 0x8D (no packet arrived in time), a 3.1.1 client sees the close."""
    broker = start_broker(objects={"Broker": {"PacketTimeout": PACKET_TIMEOUT_S}})
    c = m.RawClient(broker.host, broker.port, proto)
    assert c.connect("trickler", keepalive=0).reason == 0
    data = started_publish(proto)
    started = time.monotonic()
    sent, packets, closed = 0, [], False
    while not closed and time.monotonic() - started < PACKET_TIMEOUT_S + 5:
        try:
            c.send(data[sent:sent + 10])
            sent += 10
            packets.append(c.recv(0.1))
        except TimeoutError:
            continue
        except (m.Closed, BrokenPipeError, ConnectionResetError):
            closed = True
    if not closed:
        try:
            packets += c.recv_until_closed(1)
        except AssertionError:
            pass
        closed = c.eof
    elapsed = time.monotonic() - started
    assert closed or packets, f"still open after {elapsed:.1f} s and {sent} bytes"
    assert PACKET_TIMEOUT_S <= elapsed <= PACKET_TIMEOUT_S + 2.5, elapsed
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x8D)], packets
    else:
        assert packets == []
    c.close()


def test_a_slow_but_progressing_client_is_not_cut(start_broker, proto):
    """A client whose QoS 1 PUBLISHes each take about 1 s of the 2 s allowed, for 6 s in all,
    stays connected and has every one acknowledged."""
    broker = start_broker(objects={"Broker": {"PacketTimeout": PACKET_TIMEOUT_S}})
    c = m.RawClient(broker.host, broker.port, proto)
    assert c.connect("slow", keepalive=0).reason == 0
    for packet_id in range(1, 7):
        data = m.publish("t", b"x" * 1000, qos=1, packet_id=packet_id, version=proto)
        for at in range(0, len(data), len(data) // 10 + 1):
            c.send(data[at:at + len(data) // 10 + 1])
            time.sleep(0.1)
        assert c.expect(m.PUBACK).packet_id == packet_id
    c.close()


class Bystander(threading.Thread):
    """A client that publishes to its own topic at QoS 1 and waits for its message to come
    back, again and again, until told to stop; it records every round trip that completed and
    fails (in `error`) if one does not complete within `timeout` seconds."""

    def __init__(self, broker, timeout: float = 10):
        super().__init__(daemon=True)
        self.client = m.RawClient(broker.host, broker.port, V5)
        assert self.client.connect("bystander").reason == 0
        assert self.client.subscribe([("by/t", 1)]).reasons == [1]
        self.timeout, self.stop, self.trips, self.error = timeout, threading.Event(), 0, None

    def run(self) -> None:
        packet_id = 0
        try:
            while not self.stop.is_set():
                packet_id = packet_id % 60000 + 1
                self.client.publish("by/t", b"%d" % packet_id, qos=1, packet_id=packet_id)
                got = {m.PUBACK: False, m.PUBLISH: False}
                while not all(got.values()):
                    p = self.client.recv(self.timeout)
                    got[p.type] = True
                    if p.type == m.PUBLISH:
                        self.client.ack(m.PUBACK, p.packet_id)
                self.trips += 1
                time.sleep(0.005)
        except Exception as e:  # noqa: BLE001 - any failure is the test's answer
            self.error = e


@pytest.mark.parametrize("cores", [1, 2])
def test_a_hostile_subscribe_leaves_the_broker_serving_others(start_broker, cores):
    """A client sends three SUBSCRIBEs as large as MaxMessageSize allows (466,032 filters of
    6 characters each) while a bystander makes QoS 1 round trips: the hostile client gets its
    SUBACKs (MaxSubscriptionsPerSession, 1,000, granted, the rest 0x97), the bystander keeps
    completing round trips during and after it, and the broker is still up. Latency is the
    benchmark's to measure (tests/bench/hostile_subscribe.py), not asserted here."""
    broker = start_broker(args=["--cores", str(cores)])
    packet, count = m.largest_subscribe(4096 * 1024)
    bystander = Bystander(broker)
    bystander.start()
    hostile = m.RawClient(broker.host, broker.port, V5)
    assert hostile.connect("hostile").reason == 0
    try:
        for packet_id in (1, 2, 3):
            hostile.send(m.with_packet_id(packet, packet_id))
        for packet_id in (1, 2, 3):
            suback = hostile.expect(m.SUBACK, timeout=30)
            assert suback.packet_id == packet_id
            assert len(suback.reasons) == count
            assert suback.reasons[:1000] == [0] * 1000
            assert set(suback.reasons[1000:]) == {0x97}
        during = bystander.trips
        deadline = time.monotonic() + 5
        while bystander.trips < during + 20 and bystander.error is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        bystander.stop.set()
        bystander.join(15)
    assert bystander.error is None, f"the bystander failed: {bystander.error!r}"
    assert bystander.trips >= during + 20, (during, bystander.trips)
    assert broker.alive()
    hostile.close()
    bystander.client.close()
