"""MQTT over WebSocket (RFC 6455 and MQTT's chapter 6) on ironsight's one port: the HTTP upgrade
and its refusals, frames as the specification says a server treats them (with the exact bytes,
from `ws_raw.py`), and real clients over ws:// and wss:// (paho-mqtt and MQTT.js).

The default endpoint accepts `mqtt,ws` on its port, so the plain tests use the `broker` fixture;
the wss:// ones start a broker with a TLS profile.
"""

from __future__ import annotations

import json
import socket
import struct

import pytest

import mqtt_raw as m
import ws_raw as w
from helpers import Client, healthy, holds_for, mqttjs, mqttjs_missing
from tls_setup import client_context, tls_endpoint, tls_objects

pytestmark = pytest.mark.ironsight_only(reason="Mosquitto's WebSocket listener is a separate "
                                        "port and answers HTTP differently")

DEBUG = {"IRONSIGHT_LOG": "debug"}


def http_response(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """(status line, headers by lower-case name, body) of an HTTP response."""
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


@pytest.mark.parametrize("protocols", [None, "mqttv5, chat"], ids=["none", "others"])
def test_upgrade_without_the_mqtt_subprotocol_is_refused(broker, protocols):
    """An upgrade request that offers no subprotocol, or only ones that are not MQTT's, is
    answered `400 Bad Request` with a body that says the client must offer `mqtt`
    [MQTT-6.0.0-3], and the connection is closed; no WebSocket is opened."""
    reply = w.http_exchange(broker.host, broker.port, w.upgrade_request(broker.host,
                                                                        protocols=protocols))
    status, headers, body = http_response(reply)
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == ["close"]
    assert int(headers["content-length"][0]) == len(body)
    assert b"must offer the WebSocket subprotocol mqtt [MQTT-6.0.0-3]" in body
    assert "sec-websocket-accept" not in headers
    healthy(broker)


@pytest.mark.parametrize("offered, chosen", [("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"),
                                             ("chat, mqtt", "mqtt"),
                                             ("mqttv3.1, mqtt", "mqtt")])
def test_subprotocol_is_negotiated(broker, offered, chosen):
    """`mqtt` and `mqttv3.1` (what MQTT 3.1 clients offer) are both accepted; among several
    offers the broker picks `mqtt` first, and answers 101 with the RFC 6455 accept key and
    the chosen subprotocol; MQTT then flows."""
    c = w.WsClient(broker.host, broker.port, 5, protocols=offered)
    try:
        status, headers, _ = http_response(c.response.encode() + b"\r\n\r\n")
        assert status == "HTTP/1.1 101 Switching Protocols"
        assert headers["sec-websocket-protocol"] == [chosen]
        assert headers["upgrade"] == ["websocket"]
        assert c.connect("subprotocol").reason == 0
    finally:
        c.close()


@pytest.mark.parametrize("path", ["/", "/mqtt", "/any/deep/path?with=query"])
def test_any_path_is_accepted(broker, path):
    """The request path is not looked at: clients are configured with /mqtt, /ws or nothing,
    and all of them connect."""
    c = w.WsClient(broker.host, broker.port, 5, path=path)
    try:
        assert c.connect(f"path-{len(path)}").reason == 0
    finally:
        c.close()


def test_non_get_request_is_refused_with_405(broker):
    """A POST to the port is answered `405 Method Not Allowed` with `Allow: GET`, then
    closed."""
    reply = w.http_exchange(broker.host, broker.port,
                            w.upgrade_request(broker.host, method="POST"))
    status, headers, _ = http_response(reply)
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == ["GET"]
    healthy(broker)


def test_plain_http_get_gets_426_upgrade_required(broker):
    """A plain HTTP GET without an upgrade (a browser or a health check pointed at the port)
    is answered `426 Upgrade Required` with `Upgrade: websocket` (and `upgrade` in its one
    Connection header, as RFC 9110 7.8 asks of a message with Upgrade), then closed."""
    reply = w.http_exchange(broker.host, broker.port,
                            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, body = http_response(reply)
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["upgrade"] == ["websocket"]
    assert headers["connection"] == ["upgrade, close"]
    assert b"not a WebSocket upgrade" in body
    healthy(broker)


def test_unmasked_client_frame_is_closed_with_1002(broker):
    """RFC 6455 5.1: a server must close the connection on an unmasked client frame. An
    unmasked binary frame holding a valid CONNECT gets a close frame with status 1002
    (protocol error), then the TCP close; no CONNACK."""
    c = w.WsClient(broker.host, broker.port, 5)
    try:
        c.send_frame(w.BINARY, m.connect("unmasked", version=5), masked=False)
        assert c.expect_close() == 1002
    finally:
        c.close()
    assert broker.wait_log("connection refused .* error=WebSocket protocol error: client frame "
                           "not masked")
    healthy(broker)


def test_text_frame_is_closed_with_1003(broker):
    """[MQTT-6.0.0-1]: MQTT travels in binary frames; a text frame gets close status 1003
    (unsupported data), then the TCP close."""
    c = w.WsClient(broker.host, broker.port, 5)
    try:
        assert c.connect("texter").reason == 0
        c.send_frame(w.TEXT, b'{"hello": "mqtt"}')
        assert c.expect_close() == 1003
    finally:
        c.close()
    healthy(broker)


@pytest.mark.broker_config(max_packet=1024)
def test_frame_larger_than_max_message_size_is_closed_with_1009(broker):
    """A data frame larger than the endpoint's MaxMessageSize (1 KiB here) is refused from its
    header alone: close status 1009 (message too big) although none of the payload was sent.
    A frame of exactly 1 KiB, holding a PUBLISH of exactly 1 KiB, is accepted and its message
    delivered."""
    c = w.WsClient(broker.host, broker.port, 5)
    try:
        assert c.connect("big-frames").reason == 0
        c.subscribe("ws/big")
        head = m.publish("ws/big", b"", version=5)
        # A PUBLISH of 1024 bytes: 2-byte fixed header (remaining length < 16384 takes 2 bytes
        # from 128 on), topic, property length, payload.
        body_len = 1024 - 3
        payload = b"x" * (body_len - (len(head) - 2))
        packet = m.publish("ws/big", payload, version=5)
        assert len(packet) == 1024
        c.send(packet)
        got = c.expect(m.PUBLISH)
        assert got.payload == payload
        c.send_raw(w.frame(w.BINARY, b"", length=1025))
        assert c.expect_close() == 1009
    finally:
        c.close()
    healthy(broker)


@pytest.mark.parametrize("framing", ["messages", "fragments"])
def test_connect_split_one_byte_per_frame(broker, proto, framing):
    """MQTT packets may span frames [MQTT-6.0.0-2]: a CONNECT sent one byte per frame (as
    that many binary messages, or as one message of a binary frame and continuation frames)
    is answered with a CONNACK, and the connection then subscribes and gets its own
    message."""
    c = w.WsClient(broker.host, broker.port, proto)
    try:
        connect = m.connect(f"split-{framing}", version=proto)
        last = len(connect) - 1
        if framing == "messages":
            frames = [w.frame(w.BINARY, connect[i:i + 1]) for i in range(len(connect))]
        else:
            frames = [w.frame(w.BINARY if i == 0 else w.CONTINUATION, connect[i:i + 1],
                              fin=i == last) for i in range(len(connect))]
        c.send_raw(b"".join(frames))
        assert c.expect(m.CONNACK).reason == 0
        c.subscribe([("ws/split", 1)])
        c.publish("ws/split", b"whole again", qos=1, packet_id=7)
        got = [c.recv(), c.recv()]
        assert sorted(p.type for p in got) == [m.PUBLISH, m.PUBACK]
        assert [p.payload for p in got if p.type == m.PUBLISH] == [b"whole again"]
    finally:
        c.close()


def test_ping_is_answered_with_pong(broker):
    """A ping frame is answered with a pong carrying the same payload (RFC 6455 5.5.3), and the
    MQTT session goes on: PINGREQ gets PINGRESP."""
    c = w.WsClient(broker.host, broker.port, 5)
    try:
        assert c.connect("pinger").reason == 0
        c.send_frame(w.PING, b"are you there")
        assert c.next_frame() == (w.PONG, True, b"are you there")
        c.send(m.pingreq())
        assert c.expect(m.PINGRESP)
    finally:
        c.close()


def test_client_close_frame_is_answered(broker):
    """A client's close frame (1000, normal) is answered with a close frame of the same
    status, then the TCP close."""
    c = w.WsClient(broker.host, broker.port, 5)
    try:
        assert c.connect("closer").reason == 0
        c.send_frame(w.CLOSE, struct.pack(">H", 1000))
        assert c.expect_close() == 1000
    finally:
        c.close()


def peer_closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer's FIN arrives within `seconds` (and nothing else does)."""
    sock.settimeout(seconds)
    try:
        got = sock.recv(1)
    except socket.timeout:
        return False
    assert got == b"", f"unexpected bytes after the close frame: {got!r}"
    return True


def test_close_reply_after_disconnect_is_not_reset(broker, proto):
    """After the client's DISCONNECT the broker closes the WebSocket normally: a close frame
    with status 1000. RFC 6455 5.5.1 obliges the client to answer with its own close frame,
    and 7.1.1 has the server close the TCP connection once it has received that answer; so
    the answer must not be met by a TCP reset. Here the client reads the broker's close frame,
    gives the broker up to 1 s to close its side, answers with a close frame, and then no
    reset may arrive for 0.3 s (read as SO_ERROR). Three rounds.

    A reset here is what made MQTT.js report "write EPIPE" on a clean client.end() (see
    test_mqttjs_round_trip). (A close on a violation, such as 1003 for a text frame, "fails"
    the connection, RFC 6455 7.1.7, and need not wait for an answer.)"""
    for round_ in range(3):
        c = w.WsClient(broker.host, broker.port, proto)
        try:
            assert c.connect(f"goodbye-{round_}").reason == 0
            c.send(m.disconnect(proto))
            assert c.next_frame() == (w.CLOSE, True, struct.pack(">H", 1000))
            peer_closed_within(c.sock, 1)
            c.send_frame(w.CLOSE, struct.pack(">H", 1000))
            assert holds_for(lambda: c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0,
                             0.3), f"round {round_}: the close frame was answered with a reset"
        finally:
            c.close()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_paho_over_websocket(start_broker, pki, proto, secure):
    """paho-mqtt with transport="websockets" (ws://, and wss:// with the test CA) subscribes,
    publishes at QoS 1 and 2 and gets both messages; the log shows the connection's
    secure flag."""
    b = start_broker(endpoint=tls_endpoint("mqtt,ws,wss"), objects=tls_objects(pki), env=DEBUG)
    tls = client_context(pki) if secure else None
    c = Client(b, proto, f"paho-ws-{secure}", transport="websockets", tls=tls)
    try:
        c.connect()
        c.subscribe("ws/paho", 2)
        assert c.publish("ws/paho", b"one", 1) == 0
        assert c.publish("ws/paho", b"two", 2) == 0
        assert [(x.payload, x.qos) for x in c.wait_messages(2)] == [(b"one", 1), (b"two", 2)]
    finally:
        c.close()
    assert b.log_lines(rf"connected .* secure={str(secure).lower()} "
                       rf"client_id=paho-ws-{secure} ")


@pytest.mark.skipif(bool(mqttjs_missing()), reason=str(mqttjs_missing()))
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_mqttjs_round_trip(start_broker, pki, procs, proto, scheme):
    """MQTT.js (node) over ws:// and wss:// with MQTT 3.1.1 and 5: it connects, subscribes at
    QoS 1, publishes to its own topic at QoS 1 and receives the message, then ends cleanly
    (exit status 0)."""
    b = start_broker(endpoint=tls_endpoint("mqtt,ws,wss"), objects=tls_objects(pki), env=DEBUG)
    client_id = f"mqttjs-{scheme}-{proto}"
    out = mqttjs(procs, f"{scheme}://{b.host}:{b.port}/mqtt", client_id, proto, "js/echo",
                 ca=pki.path("ca.pem") if scheme == "wss" else None, publish="from node")
    assert out.finish() == 0, out.lines
    events = [json.loads(x) for x in out.lines]
    assert [e for e in events if e["event"] == "message"] == \
        [{"event": "message", "topic": "js/echo", "payload": "from node", "qos": 1}]
    assert events[0] == {"event": "connected", "reason": 0}
    # Nothing goes wrong, also not while MQTT.js says goodbye: its answer to the broker's close
    # frame meets a lingering socket, not a reset ("write EPIPE" before the broker lingered).
    assert [e for e in events if e["event"].startswith("error")] == []
    assert b.log_lines(rf"connected .* secure={str(scheme == 'wss').lower()} "
                       rf"client_id={client_id} ")
