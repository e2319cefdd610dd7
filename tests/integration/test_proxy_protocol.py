"""The PROXY protocol (versions 1 and 2, as HAProxy and cloud load balancers send it): with
Endpoint.ProxyProtocol every connection starts with a header naming the client's real address,
which the broker then uses as the connection's peer; without it, a header is refused.

The headers are built here byte by byte; the peer address the broker took is read from its
DEBUG "connected ... peer=..." line.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time

import pytest

import mqtt_raw as m
import ws_raw as w
from helpers import healthy, read_until_closed
from tls_setup import client_context, tls_endpoint, tls_objects

pytestmark = pytest.mark.ironsight_only(reason="Endpoint.ProxyProtocol is ironsight's")

DEBUG = {"IRONSIGHT_LOG": "debug"}
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(source: str, source_port: int) -> bytes:
    """`PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n`."""
    ip = ipaddress.ip_address(source)
    family, destination = ("TCP4", "192.0.2.1") if ip.version == 4 else ("TCP6", "2001:db8::1")
    return f"PROXY {family} {source} {destination} {source_port} 1883\r\n".encode()


def v2_header(source: str, source_port: int) -> bytes:
    """Signature, version 2 + PROXY command (0x21), TCP over IPv4 (0x11) or IPv6 (0x21), the
    length of the address block, then source and destination addresses and ports."""
    ip = ipaddress.ip_address(source)
    if ip.version == 4:
        family, destination = 0x11, ipaddress.ip_address("192.0.2.1")
    else:
        family, destination = 0x21, ipaddress.ip_address("2001:db8::1")
    addresses = ip.packed + destination.packed + struct.pack(">HH", source_port, 1883)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack(">H", len(addresses)) + addresses


def peer_text(source: str, port: int) -> str:
    ip = ipaddress.ip_address(source)
    return f"{source}:{port}" if ip.version == 4 else f"[{source}]:{port}"


HEADERS = {
    "v1-tcp4": (v1_header, "203.0.113.7", 56324),
    "v1-tcp6": (v1_header, "2001:db8::7", 40001),
    "v2-ipv4": (v2_header, "198.51.100.23", 1024),
    "v2-ipv6": (v2_header, "2001:db8:ffff::42", 65535),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_proxy_header_gives_the_peer_address(start_broker, proto, case):
    """ProxyProtocol true: a raw client sends a PROXY header (v1 text or v2 binary, IPv4 or
    IPv6 source) and then CONNECT in the same write, and gets CONNACK; the broker's DEBUG
    "connected" line names the address from the header as the peer, not 127.0.0.1."""
    build, source, port = HEADERS[case]
    b = start_broker(endpoint={"ProxyProtocol": True}, env=DEBUG)
    r = m.RawClient(b.host, b.port, proto)
    try:
        r.send(build(source, port) + m.connect(f"proxied-{case}", version=proto))
        assert r.expect(m.CONNACK).reason == 0
        r.subscribe([("proxy/t", 0)])
        r.publish("proxy/t", b"through the balancer")
        assert r.expect(m.PUBLISH).payload == b"through the balancer"
    finally:
        r.close()
    lines = b.wait_log(rf"connected conn=\d+ peer=(\S+) secure=false client_id=proxied-{case} ")
    assert [x.group(1) for x in lines] == [peer_text(source, port)]


def test_proxy_header_may_arrive_in_pieces(start_broker):
    """The header is read across TCP segments: a v1 header sent a few bytes at a time, then
    CONNECT, still connects with the header's address."""
    b = start_broker(endpoint={"ProxyProtocol": True}, env=DEBUG)
    header = v1_header("203.0.113.99", 4242)
    r = m.RawClient(b.host, b.port, 5)
    try:
        for i in range(0, len(header), 7):
            r.send(header[i:i + 7])
        r.send(m.connect("pieces", version=5))
        assert r.expect(m.CONNACK).reason == 0
    finally:
        r.close()
    assert b.wait_log(r"connected conn=\d+ peer=203\.0\.113\.99:4242 secure=false "
                      r"client_id=pieces ")


def test_proxy_header_before_tls_and_websocket(start_broker, pki):
    """With every transport on the port, the PROXY header comes before whatever the client
    speaks: a TLS handshake (then MQTT inside) and a WebSocket upgrade both connect and carry
    the header's address; the TLS one is secure=true."""
    b = start_broker(endpoint=tls_endpoint("mqtt,mqtts,ws,wss", ProxyProtocol=True),
                     objects=tls_objects(pki), env=DEBUG)
    sock = socket.create_connection((b.host, b.port), timeout=5)
    sock.sendall(v1_header("203.0.113.1", 1111))
    r = m.RawClient.over(client_context(pki).wrap_socket(sock, server_hostname=b.host))
    try:
        assert r.connect("proxied-tls").reason == 0
    finally:
        r.close()
    c = w.WsClient(b.host, b.port, 5, prefix=v2_header("198.51.100.2", 2222))
    try:
        assert c.connect("proxied-ws").reason == 0
    finally:
        c.close()
    assert b.wait_log(r"connected conn=\d+ peer=203\.0\.113\.1:1111 secure=true "
                      r"client_id=proxied-tls ")
    assert b.wait_log(r"connected conn=\d+ peer=198\.51\.100\.2:2222 secure=false "
                      r"client_id=proxied-ws ")


def test_connection_without_the_header_is_closed(start_broker):
    """ProxyProtocol true: a client that starts with CONNECT (no header) is closed without
    a byte, and the broker logs that the connection does not start with a PROXY header."""
    b = start_broker(endpoint={"ProxyProtocol": True})
    with socket.create_connection((b.host, b.port), timeout=5) as s:
        s.sendall(m.connect("direct", version=5))
        assert read_until_closed(s) == b""
    assert b.wait_log("connection refused .* error=the connection does not start with a PROXY "
                      "protocol header")
    assert proxied_connect(b, "after") == 0


def test_stalled_proxy_header_is_closed_after_connect_timeout(start_broker):
    """Broker.ConnectTimeout (2 s here) bounds the PROXY header too: a client that sends half
    a v1 header, or half a v2 header, and then nothing is closed without a byte between 1 s and
    6 s later. A whole header and CONNECT still connect afterwards."""
    b = start_broker(endpoint={"ProxyProtocol": True}, env=DEBUG,
                     objects={"Broker": {"ConnectTimeout": 2}})
    halves = [v1_header("203.0.113.7", 56324)[:20], v2_header("203.0.113.7", 56324)[:20]]
    started = time.monotonic()
    socks = [socket.create_connection((b.host, b.port), timeout=5) for _ in halves]
    try:
        for sock, half in zip(socks, halves):
            sock.sendall(half)
        for sock in socks:
            assert read_until_closed(sock, max(0.1, started + 8 - time.monotonic())) == b""
            assert 1.0 <= time.monotonic() - started <= 6.0
    finally:
        for sock in socks:
            sock.close()
    assert proxied_connect(b, "after-the-stalls") == 0


def proxied_connect(b, client_id: str) -> int:
    """Connect through a v1 header; return the CONNACK's reason."""
    r = m.RawClient(b.host, b.port, 5)
    try:
        r.send(v1_header("192.0.2.50", 5000) + m.connect(client_id, version=5))
        return r.expect(m.CONNACK).reason
    finally:
        r.close()


# A PROXY header on an endpoint without ProxyProtocol: (Transports, header, what comes back).
UNEXPECTED = {
    # 'P' is an uppercase letter, so with ws enabled the bytes are read as an HTTP request:
    # "PROXY TCP4 203.0.113.7 ..." is no HTTP request line, hence 400 Bad Request.
    "v1-on-mqtt-ws": ("mqtt,ws", v1_header("203.0.113.7", 56324), b"HTTP/1.1 400 Bad Request\r\n"),
    # Without ws, 'P' (0x50) goes to MQTT, where it is no CONNECT: closed without a byte.
    "v1-on-mqtt": ("mqtt", v1_header("203.0.113.7", 56324), b""),
    # The v2 signature starts with CR (0x0D): MQTT, and no CONNECT either.
    "v2-on-mqtt-ws": ("mqtt,ws", v2_header("203.0.113.7", 56324), b""),
}


@pytest.mark.parametrize("case", list(UNEXPECTED))
def test_proxy_header_is_refused_where_not_enabled(start_broker, case):
    """Without ProxyProtocol a PROXY header is refused (anybody could otherwise claim any
    address): the header and a CONNECT after it are not served. What the client gets back
    depends on what the first byte looks like: with ws enabled, a v1 header ("PROXY ...",
    an uppercase letter first) is taken for an HTTP request and answered 400 Bad Request;
    otherwise the bytes go to MQTT, which closes a connection whose first packet is not
    CONNECT, without a byte. The broker stays healthy."""
    transports, header, answer = UNEXPECTED[case]
    b = start_broker(endpoint={"Transports": transports}, env=DEBUG)
    with socket.create_connection((b.host, b.port), timeout=5) as s:
        s.sendall(header + m.connect("claims-an-address", version=5))
        got = read_until_closed(s)
    assert got.startswith(answer) if answer else got == b"", got
    assert not b.log_lines("client_id=claims-an-address")
    healthy(b)
