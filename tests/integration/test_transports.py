"""One port for every transport (Endpoint.Transports mqtt,mqtts,ws,wss), and TLS and WebSocket
connections living like plain ones: parked when idle, handed to the shard that owns their
client id, and still served in both directions afterwards.

The clients are ones nobody here wrote: mosquitto_sub (plain and TLS), paho-mqtt (TLS,
WebSocket, WebSocket over TLS) and MQTT.js (WebSocket over TLS).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import time

import pytest

import mqtt_raw as m
import ws_raw as w
from helpers import (V5, V311, Client, mosquitto_pub, mosquitto_sub, mqttjs, mqttjs_missing,
                     read_until_closed)
from tls_setup import (MemoryTls, client_context, client_hello, mosquitto_tls_args, raw_tls,
                       tls_endpoint, tls_objects)

pytestmark = [
    pytest.mark.ironsight_only(reason="one port for MQTT, TLS and WebSocket is ironsight's"),
    pytest.mark.skipif(not shutil.which("mosquitto_sub"), reason="mosquitto clients not installed"),
]

DEBUG = {"IRONSIGHT_LOG": "debug"}
ALL = "mqtt,mqtts,ws,wss"


@pytest.mark.skipif(bool(mqttjs_missing()), reason=str(mqttjs_missing()))
def test_one_port_serves_all_four_transports_at_once(start_broker, pki, procs):
    """On one port: mosquitto_sub over plain MQTT, mosquitto_sub over TLS, paho over ws://
    and MQTT.js over wss:// subscribe to one topic; one mosquitto_pub (plain) reaches all four,
    each exactly once. The log shows each subscriber's connection with the right secure
    flag."""
    b = start_broker(endpoint=tls_endpoint(ALL), objects=tls_objects(pki), env=DEBUG)
    plain = mosquitto_sub(procs, b, "one/port", "sub-mqtt", "mqttv311")
    secure = mosquitto_sub(procs, b, "one/port", "sub-mqtts", "5",
                           extra=mosquitto_tls_args(pki))
    ws = Client(b, V311, "sub-ws", transport="websockets")
    try:
        ws.connect()
        ws.subscribe("one/port", 1)
        js = mqttjs(procs, f"wss://{b.host}:{b.port}/mqtt", "sub-wss", 5, "one/port",
                    ca=pki.path("ca.pem"))
        done = mosquitto_pub(b, "one/port", "to every transport", "pub-mqtt")
        assert done.returncode == 0, done.stderr
        for out in (plain, secure):
            assert out.finish() == 0
            assert [x for x in out.lines if x.startswith("MSG")] == \
                ["MSG 1 one/port to every transport"]
        assert js.finish() == 0, js.lines
        events = [json.loads(x) for x in js.lines]
        assert [e for e in events if e["event"] == "message"] == [
            {"event": "message", "topic": "one/port", "payload": "to every transport", "qos": 1}]
        assert [e for e in events if e["event"].startswith("error")] == []
        assert [msg.payload for msg in ws.wait_messages(1)] == [b"to every transport"]
    finally:
        ws.close()
    for client_id, secure_flag in [("sub-mqtt", "false"), ("sub-mqtts", "true"),
                                   ("sub-ws", "false"), ("sub-wss", "true")]:
        assert len(b.log_lines(rf"connected .* secure={secure_flag} "
                               rf"client_id={client_id} ")) == 1, client_id


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for 2 shards")
def test_parked_and_handed_over_tls_and_websocket_connections_keep_working(start_broker, pki):
    """On a broker with 2 shards, 16 clients over TLS, 16 over WebSocket and 16 over WebSocket
    in TLS (MQTT 3.1.1 and 5 alternately, distinct client ids) connect and subscribe to their
    own topic. Client ids are hashed to shards, so about half of the connections are handed
    over to the other shard (the log says so). Left idle, every connection is parked (a
    "parked" line each). Then traffic flows both ways through the parked connections: a hub
    client publishes one message to each client's topic and each client receives exactly its
    own; each client publishes one message that the hub receives."""
    b = start_broker(endpoint=tls_endpoint(ALL), objects=tls_objects(pki), env=DEBUG,
                     args=["--cores", "2"])
    kinds = {"tls": ("tcp", True), "ws": ("websockets", False), "wss": ("websockets", True)}
    hub = Client(b, V5, "hub")
    clients = []
    try:
        hub.connect()
        hub.subscribe("up/#", 1)
        for kind, (transport, secure) in kinds.items():
            for i in range(16):
                c = Client(b, (V311, V5)[i % 2], f"{kind}-{i:02}", transport=transport,
                           tls=client_context(pki) if secure else None)
                clients.append(c)
                c.connect()
                c.subscribe(f"down/{c.client_id}", 1)
        connections = len(clients) + 1
        assert len(b.log_lines("handed over to the shard that owns the client id")) >= 4
        b.wait_log(r"DEBUG .* parked conn=\d+$", connections, timeout=10)
        for c in clients:
            assert hub.publish(f"down/{c.client_id}", c.client_id.encode(), 1) == 0
        for c in clients:
            assert [msg.payload for msg in c.wait_messages(1)] == [c.client_id.encode()]
            assert c.publish(f"up/{c.client_id}", b"from " + c.client_id.encode(), 1) == 0
        got = hub.wait_messages(len(clients))
        assert sorted(msg.payload for msg in got) == \
            sorted(b"from " + c.client_id.encode() for c in clients)
        assert [c.client_id for c in clients if len(c.received()) != 1] == []
    finally:
        for c in clients:
            c.close()
        hub.close()


def test_connections_parked_mid_record_and_mid_frame_resume(start_broker, pki):
    """A connection can go idle with part of a TLS record or of a WebSocket frame received:
    a TLS client sends the first 7 bytes of the record holding its SUBSCRIBE, a ws:// and a
    wss:// client the first 3 bytes of the frame holding theirs. All three are parked (2 s
    without a packet), keeping those bytes; then each sends the rest and gets its SUBACK, and
    a message published to the topic reaches all three."""
    b = start_broker(endpoint=tls_endpoint(ALL), objects=tls_objects(pki), env=DEBUG)
    tls = MemoryTls(b, client_context(pki))
    clients = [m.RawClient.over(tls, 5),
               w.WsClient(b.host, b.port, 5),
               w.WsClient(b.host, b.port, 5, tls=client_context(pki))]
    try:
        for i, c in enumerate(clients):
            assert c.connect(f"mid-{i}").reason == 0
        subscribe = m.subscribe(1, [("mid/t", 0)], 5)
        record = tls.seal(subscribe)
        frame = w.frame(w.BINARY, subscribe)
        rests = [(tls.sock.sendall, record[7:]), (clients[1].send_raw, frame[3:]),
                 (clients[2].send_raw, frame[3:])]
        tls.sock.sendall(record[:7])
        clients[1].send_raw(frame[:3])
        clients[2].send_raw(frame[:3])
        b.wait_log(r"DEBUG .* parked conn=\d+$", 3, timeout=10)
        for send, rest in rests:
            send(rest)
        for c in clients:
            assert c.expect(m.SUBACK).reasons == [0]
        clients[0].publish("mid/t", b"to all three")
        for c in clients:
            assert c.expect(m.PUBLISH).payload == b"to all three"
    finally:
        for c in clients:
            c.close()


def test_every_transport_stalled_before_connect_is_closed_after_connect_timeout(start_broker,
                                                                                  pki):
    """Broker.ConnectTimeout (2 s here) bounds the time from accept to CONNECT whatever the
    client stalls in: nothing sent, half a CONNECT, half a ClientHello, a finished TLS
    handshake, half an upgrade request (plain and in TLS), a finished upgrade (plain and in
    TLS). All eight, open at once, are closed between 1 s and 6 s after they started; the
    upgraded WebSockets get a close frame (status 1000) first, the others no byte. The log
    has a "no CONNECT in time" line for each."""
    b = start_broker(endpoint=tls_endpoint(ALL), env=DEBUG,
                     objects={**tls_objects(pki), "Broker": {"ConnectTimeout": 2}})

    def tcp():
        return socket.create_connection((b.host, b.port), timeout=5)

    def tls():
        return client_context(pki).wrap_socket(tcp(), server_hostname=b.host)

    def upgraded(sock):
        sock.sendall(w.upgrade_request(b.host))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 ") and head.endswith(b"\r\n\r\n"), head
        return sock

    def sent(sock, data):
        sock.sendall(data)
        return sock

    started = time.monotonic()
    close_1000 = w.frame(w.CLOSE, struct.pack(">H", 1000), masked=False)
    stalls = {
        "tcp-nothing": (tcp(), b""),
        "mqtt-half-connect": (sent(tcp(), m.connect("half", version=5)[:5]), b""),
        "tls-half-hello": (sent(tcp(), client_hello()[:40]), b""),
        "tls-no-connect": (tls(), b""),
        "ws-half-upgrade": (sent(tcp(), w.upgrade_request(b.host)[:20]), b""),
        "ws-no-connect": (upgraded(tcp()), close_1000),
        "wss-half-upgrade": (sent(tls(), w.upgrade_request(b.host)[:20]), b""),
        "wss-no-connect": (upgraded(tls()), close_1000),
    }
    try:
        for name, (sock, expected) in stalls.items():
            got = read_until_closed(sock, max(0.1, started + 8 - time.monotonic()))
            assert got == expected, name
            waited = time.monotonic() - started
            assert 1.0 <= waited <= 6.0, (name, waited)
    finally:
        for sock, _ in stalls.values():
            sock.close()
    assert len(b.log_lines("no CONNECT in time")) == len(stalls)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for 2 shards")
def test_bytes_after_connect_follow_the_handoff(start_broker, pki):
    """A client may send CONNECT, SUBSCRIBE and PUBLISH in one write, before the CONNACK. When
    its CONNECT moves the connection to the shard that owns its client id, the bytes after the
    CONNECT (still inside a TLS record, or inside WebSocket frames cut every 3 bytes) go with
    it: every client gets CONNACK, SUBACK, its own message and the PUBACK. 8 clients per
    transport on 2 shards, so that some are surely handed over (the log shows it)."""
    b = start_broker(endpoint=tls_endpoint(ALL), objects=tls_objects(pki), env=DEBUG,
                     args=["--cores", "2"])
    for kind in ("tls", "ws", "wss"):
        for i in range(8):
            client_id = f"burst-{kind}-{i}"
            topic = f"burst/{client_id}"
            burst = (m.connect(client_id, version=5) + m.subscribe(1, [(topic, 1)], 5)
                     + m.publish(topic, b"in the same write", qos=1, packet_id=2, version=5))
            if kind == "tls":
                c = raw_tls(b, client_context(pki))
                c.send(burst)
            else:
                c = w.WsClient(b.host, b.port, 5,
                               tls=client_context(pki) if kind == "wss" else None)
                c.send_raw(b"".join(w.frame(w.BINARY, burst[j:j + 3])
                                    for j in range(0, len(burst), 3)))
            try:
                assert c.expect(m.CONNACK).reason == 0, client_id
                got = [c.recv(), c.recv(), c.recv()]
            finally:
                c.close()
            assert sorted(p.type for p in got) == [m.PUBLISH, m.PUBACK, m.SUBACK], client_id
            assert [p.payload for p in got if p.type == m.PUBLISH] == [b"in the same write"]
    assert len(b.log_lines("handed over to the shard that owns the client id")) >= 2


@pytest.mark.parametrize("kind", ["tls", "ws", "wss"])
def test_large_message_crosses_the_transport(start_broker, pki, proto, kind):
    """A 1 MiB message (many TLS records, a WebSocket frame of 1 MiB each way) published at
    QoS 1 by a paho client to its own subscription comes back byte for byte."""
    b = start_broker(endpoint=tls_endpoint(ALL), objects=tls_objects(pki))
    transport, secure = {"tls": ("tcp", True), "ws": ("websockets", False),
                         "wss": ("websockets", True)}[kind]
    c = Client(b, proto, f"large-{kind}", transport=transport,
               tls=client_context(pki) if secure else None)
    payload = bytes(range(256)) * 4096
    try:
        c.connect()
        c.subscribe("large/t", 1)
        assert c.publish("large/t", payload, 1, timeout=10) == 0
        assert c.wait_messages(1, timeout=10)[0].payload == payload
    finally:
        c.close()
