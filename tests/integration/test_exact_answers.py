"""Exact answers where the specification gives one, over raw sockets: packets only a server
sends, a second CONNECT, AUTH without an authentication method, an authentication method the
broker does not support, the client's Maximum Packet Size for every packet the broker sends,
a DISCONNECT that a client still sending can read, and the keep alive cap (`MaxKeepAlive`).
Each hostile-input test ends by checking that the broker serves a healthy client."""

import time

import pytest

import mqtt_raw as m
from helpers import V5, V311, healthy


def ironsight_v5(reason):
    """Parametrize `proto` so that v3.1.1 runs everywhere and v5 only under ironsight."""
    return pytest.mark.parametrize("proto", [V311, pytest.param(
        V5, marks=pytest.mark.ironsight_only(reason=reason))], ids=["v311", "v5"])


def disconnect_then_close(r, timeout=5):
    """The packets before the close, which must be exactly one DISCONNECT: returned."""
    packets = r.recv_until_closed(timeout)
    assert [p.type for p in packets] == [m.DISCONNECT], packets
    return packets[0]


# ---- packets a client may not send ------------------------------------------------------------

SERVER_ONLY = [
    pytest.param(b"\x20\x02\x00\x00", "CONNACK", id="connack"),          # CONNACK accepted
    pytest.param(b"\x20\x00", "CONNACK", id="connack-empty"),            # CONNACK, no body
    pytest.param(b"\x90\x03\x00\x01\x00", "SUBACK", id="suback"),        # SUBACK id 1, QoS 0
    pytest.param(b"\x90\x01\xff", "SUBACK", id="suback-garbage"),        # SUBACK, 1 byte body
    pytest.param(b"\xb0\x02\x00\x01", "UNSUBACK", id="unsuback"),        # UNSUBACK id 1
    pytest.param(b"\xd0\x00", "PINGRESP", id="pingresp"),                # PINGRESP
    pytest.param(b"\xd3\x02\x01\x02", "PINGRESP", id="pingresp-garbage"),  # flags 3, a body
]


@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 ignores a v3.1.1 client's SUBACK and "
                            "PINGRESP and closes a v5 one without DISCONNECT")
@pytest.mark.parametrize("bytes_, name", SERVER_ONLY)
def test_server_only_packet_is_a_protocol_error(broker, raw, proto, bytes_, name):
    """A client that sends a packet only a server sends (direction server to client, §2.1.2)
    commits a Protocol Error: v5 gets DISCONNECT 0x82, not 0x81 (Malformed Packet), whether or
    not the body would decode, with the rule as Reason String; v3.1.1 gets the close."""
    r = raw(proto)
    r.connect("wrong-way")
    r.send(bytes_)
    packets = r.recv_until_closed()
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x82)]
        assert packets[0].props["reason_string"] == f"§2.1.2 {name} flows only from server to client"
    else:
        assert packets == []
    healthy(broker, proto)


@ironsight_v5("Mosquitto 2.0.11 closes without DISCONNECT 0x82")
def test_malformed_second_connect_is_still_a_protocol_error(broker, raw, proto):
    """A second CONNECT is a Protocol Error [MQTT-3.1.0-2] even when its body does not decode
    (`10 02 ff ff`): v5 gets DISCONNECT 0x82 naming the rule, v3.1.1 the close."""
    r = raw(proto)
    r.connect("twice")
    r.send(b"\x10\x02\xff\xff")
    packets = r.recv_until_closed()
    if proto == V5:
        assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x82)]
        assert packets[0].props["reason_string"].startswith("[MQTT-3.1.0-2]")
    else:
        assert packets == []
    healthy(broker, proto)


@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 closes without DISCONNECT 0x82")
@pytest.mark.parametrize("bytes_", [
    pytest.param(m.auth(0x19), id="reauthenticate"),   # AUTH 0x19 (Re-authenticate)
    pytest.param(b"\xf0\x00", id="empty"),             # AUTH, no body
    pytest.param(b"\xf0\x01\x42", id="bad-reason"),    # AUTH, reason code 0x42 (none such)
])
def test_auth_without_authentication_method_is_a_protocol_error(broker, raw, bytes_):
    """AUTH from a v5 client whose CONNECT named no Authentication Method is a Protocol Error
    [MQTT-4.12.0-7]: DISCONNECT 0x82 naming the rule, whatever the AUTH holds."""
    r = raw(V5)
    r.connect("no-method")
    r.send(bytes_)
    d = disconnect_then_close(r)
    assert d.reason == 0x82
    assert d.props["reason_string"].startswith("[MQTT-4.12.0-7]")
    healthy(broker, V5)


def test_unsupported_authentication_method_is_refused(broker, raw):
    """A CONNECT naming an Authentication Method the broker does not support is refused with
    CONNACK 0x8C (Bad authentication method) and closed [MQTT-4.12.0-1]; it is never accepted
    as if the client had not asked (its session would never have been authenticated)."""
    r = raw(V5)
    r.send(m.connect("sasl", props={"authentication_method": "SCRAM-SHA-256",
                                    "authentication_data": b"n,,n=user,r=abc"}))
    packets = r.recv_until_closed()
    assert [(p.type, p.reason) for p in packets] == [(m.CONNACK, 0x8C)]
    assert not packets[0].session_present
    healthy(broker, V5)


# ---- the client's Maximum Packet Size ---------------------------------------------------------

def connack_size(broker, raw) -> int:
    """The size of the CONNACK this broker sends to a v5 client "small" that asks for nothing."""
    r = raw(V5)
    size = len(r.connect("small").raw)
    r.disconnect()
    r.recv_until_closed()
    return size


@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 sends its CONNACK whatever the client's "
                            "Maximum Packet Size")
def test_connack_respects_the_clients_maximum_packet_size(broker, raw):
    """[MQTT-3.1.2-24] holds for CONNACK: a client whose Maximum Packet Size holds exactly the
    CONNACK is accepted; one byte less, and the broker cannot accept it without breaking the
    rule or leaving out properties the client may not go without, so it refuses with the
    5-byte CONNACK 0x83 (valid, but not accepted by this server, [MQTT-3.1.4-2]); below 5 bytes
    even that is too large, and the connection closes without a word."""
    exact = connack_size(broker, raw)
    r = raw(V5)
    ack = r.connect("small", props={"maximum_packet_size": exact})
    assert (ack.reason, len(ack.raw)) == (0, exact)

    r = raw(V5)
    r.send(m.connect("small", props={"maximum_packet_size": exact - 1}))
    assert [p.raw for p in r.recv_until_closed()] == [b"\x20\x03\x00\x83\x00"]

    r = raw(V5)
    r.send(m.connect("small", props={"maximum_packet_size": 4}))
    assert r.recv_until_closed() == []
    healthy(broker, V5)


@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 sends no Reason String")
def test_disconnect_reason_string_is_dropped_to_fit(broker, raw):
    """A DISCONNECT carries the broken rule as Reason String when it fits, and leaves it out
    rather than exceed the client's Maximum Packet Size [MQTT-3.14.2-3]."""
    wide = raw(V5)
    wide.connect("wide")
    wide.send(m.pingreq()[:1] + b"\x01\x00")          # PINGREQ with a body: malformed
    d = disconnect_then_close(wide)
    assert d.reason == 0x81 and d.props["reason_string"].startswith("§4.13")

    limit = connack_size(broker, raw)
    narrow = raw(V5)
    narrow.connect("narrow", props={"maximum_packet_size": limit})
    narrow.send(m.pingreq()[:1] + b"\x01\x00")
    d = disconnect_then_close(narrow)
    assert d.reason == 0x81 and "reason_string" not in d.props
    assert len(d.raw) <= limit
    healthy(broker, V5)


@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 sends the SUBACK whatever its size")
def test_acknowledgement_too_large_for_the_client_ends_the_connection(broker, raw):
    """A SUBACK holds a reason code per filter, so it can outgrow the client's Maximum Packet
    Size. A SUBACK that fits is sent; one that does not cannot be sent [MQTT-3.1.2-24], and the
    SUBSCRIBE cannot go unanswered [MQTT-3.8.4-1]: the connection ends with DISCONNECT 0x95
    (Packet too large), and nothing over the limit ever arrives."""
    limit = max(connack_size(broker, raw), 24)
    fits = limit - 5          # fixed header 2, packet id 2, property length 1, then a code each
    r = raw(V5)
    r.connect("grows", props={"maximum_packet_size": limit})
    ack = r.subscribe([(f"f/{i}", 0) for i in range(fits)])
    assert len(ack.reasons) == fits and len(ack.raw) == limit
    r.send(m.subscribe(2, [(f"g/{i}", 0) for i in range(fits + 1)]))
    packets = r.recv_until_closed()
    assert [(p.type, p.reason) for p in packets] == [(m.DISCONNECT, 0x95)]
    assert all(len(p.raw) <= limit for p in packets)
    healthy(broker, V5)


# ---- a DISCONNECT the client can still read ---------------------------------------------------

@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 answers the extra QoS 2 PUBLISH with "
                            "PUBREC 0x97 and keeps the connection")
@pytest.mark.broker_config(max_inflight=5)
@pytest.mark.parametrize("pace", ["burst", "paced"])
def test_client_still_sending_reads_the_disconnect(broker, raw, proto, pace):
    """A client that exceeds the Receive Maximum (5 unreleased QoS 2 PUBLISHes, then more) and
    goes on sending without reading, in one burst of 256 KB or paced over a second, must still
    be able to read why it was disconnected: the broker ends its side with a FIN after
    DISCONNECT 0x93 (v5) and discards what the client still sends, instead of a close that
    answers the client's next bytes with a reset, which breaks its writes and throws away the
    DISCONNECT. So every send succeeds, the client reads 5 PUBRECs, (v5) DISCONNECT 0x93, and
    an orderly end of stream, not a reset."""
    r = raw(proto)
    r.connect("greedy")
    flood = [m.publish("rm/t", b"x" * 16, qos=2, packet_id=i, version=proto)
             for i in range(1, 10001)]
    if pace == "burst":
        r.send(b"".join(flood))          # 2 + 6 + 2 + (v5) 1 + 16 bytes each: over 256 KB
    else:
        deadline = time.monotonic() + 1
        for i, publish in enumerate(flood):
            r.send(publish)              # raises BrokenPipeError after a reset
            if i > 10 and time.monotonic() > deadline:
                break
            time.sleep(0.002)
    packets = r.recv_until_closed()
    assert [p.type for p in packets[:5]] == [m.PUBREC] * 5
    tail = [(p.type, p.reason) for p in packets[5:]]
    assert tail == ([(m.DISCONNECT, 0x93)] if proto == V5 else [])
    assert not r.reset, "the connection was reset instead of closed"
    healthy(broker, proto)


# ---- the keep alive cap -----------------------------------------------------------------------

@pytest.mark.broker_config(max_keepalive=60)
@pytest.mark.parametrize("proto", [pytest.param(V311, marks=pytest.mark.ironsight_only(
    reason="Mosquitto 2.0.11 accepts a v3.1.1 client beyond max_keepalive; its current source "
    "refuses it with return code 2, as ironsight does")), V5], ids=["v311", "v5"])
def test_keepalive_cap_answers_only_clients_that_ask_for_more(broker, raw, proto):
    """With MaxKeepAlive 60 (Mosquitto's max_keepalive), a v5 client asking for 61 s, or for
    none (0), is told Server Keep Alive 60 [MQTT-3.2.2-21]; one asking for 30 or 60 s is told
    nothing. A v3.1.1 client cannot be told: asking for 61 or 0 is refused with return code 2
    (identifier rejected, the code Mosquitto's source uses) and closed; 60 is accepted."""
    for asked, capped in [(30, False), (60, False), (61, True), (0, True)]:
        r = raw(proto)
        if proto == V5:
            ack = r.connect(f"ka{asked}", keepalive=asked)
            assert ack.reason == 0
            assert ack.props.get("server_keep_alive") == (60 if capped else None), asked
        elif capped:
            r.send(m.connect(f"ka{asked}", version=V311, keepalive=asked))
            assert [(p.type, p.reason) for p in r.recv_until_closed()] == [(m.CONNACK, 2)]
        else:
            assert r.connect(f"ka{asked}", keepalive=asked).reason == 0
        r.close()
    healthy(broker, proto)


@pytest.mark.ironsight_only(reason="Mosquitto refuses a max_keepalive below 10 s")
@pytest.mark.broker_config(max_keepalive=1)
def test_keepalive_cap_is_enforced(broker, raw):
    """The cap is enforced, not only announced: a v5 client that asked for no keep alive under
    MaxKeepAlive 1 is told 1 s, and when it stays silent it is disconnected with 0x8D after
    1.5 s (within 3.5 s, for the 1 s timer tick) [MQTT-3.1.2-22]."""
    r = raw(V5)
    assert r.connect("silent", keepalive=0).props.get("server_keep_alive") == 1
    start = time.monotonic()
    d = disconnect_then_close(r, timeout=3.5)
    assert d.reason == 0x8D
    assert time.monotonic() - start >= 1.0
