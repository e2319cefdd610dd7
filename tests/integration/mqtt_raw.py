"""A small MQTT 3.1.1 / 5.0 encoder and decoder for raw-socket tests.

Real clients (paho, mosquitto_pub/sub) refuse to send malformed packets and hide the exact packet
flow, so the tests that are about bytes use this module instead. It is deliberately small: build a
packet with one function call, read one packet back, decode it into a `Packet` whose attributes
are named after the spec's fields. Versions are the MQTT protocol level: 4 (3.1.1) or 5 (5.0).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Control packet types (the high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)
TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

# MQTT 5 properties: identifier -> (name used in this module, wire type).
PROPERTIES = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}
# Properties that may appear more than once decode to a list.
REPEATABLE = {"user_property", "subscription_identifier"}


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    """Variable Byte Integer (spec 1.5.5): 7 bits per byte, high bit = more bytes follow."""
    assert 0 <= n <= 268_435_455, n
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def utf8(s: str | bytes) -> bytes:
    """UTF-8 Encoded String: 2-byte length then the bytes. Bytes pass through unchecked, so a
    test can send invalid UTF-8 on purpose."""
    data = s.encode() if isinstance(s, str) else s
    return u16(len(data)) + data


binary = utf8  # Binary Data has the same layout: 2-byte length then the bytes.


def properties(props: dict | None) -> bytes:
    """Encode a property block (length + properties). `props` maps names from PROPERTIES to
    values; `user_property` takes a list of (key, value) pairs and keeps their order;
    `subscription_identifier` takes an int or a list of ints."""
    body = bytearray()
    for name, value in (props or {}).items():
        pid, kind = PROPERTY_IDS[name]
        values = value if name in REPEATABLE and isinstance(value, (list, tuple)) else [value]
        for v in values:
            body += varint(pid)
            if kind == "byte":
                body.append(v)
            elif kind == "u16":
                body += u16(v)
            elif kind == "u32":
                body += u32(v)
            elif kind == "varint":
                body += varint(v)
            elif kind in ("str", "bin"):
                body += utf8(v)
            elif kind == "pair":
                body += utf8(v[0]) + utf8(v[1])
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """Fixed header (type << 4 | flags, remaining length) followed by the body."""
    return bytes([ptype << 4 | flags]) + varint(len(body)) + body


def connect(client_id: str | bytes = "", version: int = 5, clean: bool = True,
            keepalive: int = 60, props: dict | None = None, will: dict | None = None,
            username: str | None = None, password: bytes | None = None) -> bytes:
    """CONNECT. `will` is a dict with topic, payload and optional qos, retain, props (v5)."""
    name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) \
        | (0x40 if password is not None else 0)
    if will:
        flags |= 0x04 | will.get("qos", 0) << 3 | (0x20 if will.get("retain") else 0)
    body = utf8(name) + bytes([version, flags]) + u16(keepalive)
    if version == 5:
        body += properties(props)
    body += utf8(client_id)
    if will:
        if version == 5:
            body += properties(will.get("props"))
        body += utf8(will["topic"]) + binary(will.get("payload", b""))
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += binary(password)
    return packet(CONNECT, 0, body)


def publish(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
            dup: bool = False, packet_id: int | None = None, version: int = 5,
            props: dict | None = None) -> bytes:
    flags = (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    body = utf8(topic)
    if qos > 0:
        assert packet_id, "QoS 1/2 PUBLISH needs a packet id"
        body += u16(packet_id)
    if version == 5:
        body += properties(props)
    return packet(PUBLISH, flags, body + payload)


def ack(ptype: int, packet_id: int, reason: int = 0, version: int = 5) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP. PUBREL carries the mandatory flags 0b0010."""
    flags = 0x02 if ptype == PUBREL else 0
    body = u16(packet_id)
    if version == 5 and reason:
        body += bytes([reason])
    return packet(ptype, flags, body)


def puback(packet_id: int, **kw) -> bytes:
    return ack(PUBACK, packet_id, **kw)


def pubrec(packet_id: int, **kw) -> bytes:
    return ack(PUBREC, packet_id, **kw)


def pubrel(packet_id: int, **kw) -> bytes:
    return ack(PUBREL, packet_id, **kw)


def pubcomp(packet_id: int, **kw) -> bytes:
    return ack(PUBCOMP, packet_id, **kw)


def sub_options(qos: int = 0, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> int:
    """Subscription Options byte (v5 3.8.3.1); for v3.1.1 only the QoS bits are used."""
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) \
        | retain_handling << 4


def subscribe(packet_id: int, filters: list[tuple[str | bytes, int]], version: int = 5,
              props: dict | None = None) -> bytes:
    """SUBSCRIBE (flags 0b0010) with (filter, options byte) pairs."""
    body = u16(packet_id) + (properties(props) if version == 5 else b"")
    for topic_filter, options in filters:
        body += utf8(topic_filter) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def largest_subscribe(packet_size: int, filter_len: int = 6, packet_id: int = 1,
                      version: int = 5) -> tuple[bytes, int]:
    """The SUBSCRIBE with the most filters of `filter_len` characters (hexadecimal counters,
    distinct while they last, QoS 0) that fits in `packet_size` bytes, fixed header included:
    what a hostile client sends to make the broker work hardest per byte. Returns the packet
    and its number of filters. Built with one join: `subscribe` would copy the body per filter."""
    head = u16(packet_id) + (properties(None) if version == 5 else b"")
    entry_len = 2 + filter_len + 1
    body_max = max(n for n in range(packet_size - 5, packet_size)
                   if 1 + len(varint(n)) + n <= packet_size)
    count = (body_max - len(head)) // entry_len
    prefix, modulo = u16(filter_len), 16 ** filter_len
    entries = b"".join(prefix + b"%0*x" % (filter_len, i % modulo) + b"\x00"
                       for i in range(count))
    return packet(SUBSCRIBE, 0x02, head + entries), count


def with_packet_id(packet: bytes, packet_id: int) -> bytes:
    """`packet`, whose body starts with a packet id (a SUBSCRIBE), with `packet_id` instead."""
    at = next(i for i in range(1, 5) if not packet[i] & 0x80) + 1   # after the fixed header
    return packet[:at] + u16(packet_id) + packet[at + 2:]


def unsubscribe(packet_id: int, filters: list[str], version: int = 5) -> bytes:
    body = u16(packet_id) + (properties(None) if version == 5 else b"")
    for topic_filter in filters:
        body += utf8(topic_filter)
    return packet(UNSUBSCRIBE, 0x02, body)


def pingreq() -> bytes:
    return bytes([PINGREQ << 4, 0])


def auth(reason: int = 0x18, props: dict | None = None) -> bytes:
    """AUTH (v5 only): reason code and properties (authentication_method, ...)."""
    return packet(AUTH, 0, bytes([reason]) + properties(props))


def disconnect(version: int = 5, reason: int = 0, props: dict | None = None) -> bytes:
    if version != 5 or (reason == 0 and not props):
        return bytes([DISCONNECT << 4, 0])
    return packet(DISCONNECT, 0, bytes([reason]) + properties(props))


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

@dataclass
class Packet:
    """One decoded control packet. Fields that do not apply to the type stay at their defaults."""
    type: int
    flags: int
    raw: bytes
    reason: int = 0                 # CONNACK / acks / DISCONNECT (v3.1.1 CONNACK return code)
    session_present: bool = False   # CONNACK
    packet_id: int | None = None
    topic: str = ""                 # PUBLISH
    qos: int = 0
    dup: bool = False
    retain: bool = False
    payload: bytes = b""
    reasons: list[int] = field(default_factory=list)  # SUBACK / UNSUBACK
    props: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type}")

    def __repr__(self) -> str:  # short, and without payload bytes
        extra = f" topic={self.topic!r} qos={self.qos} dup={self.dup} retain={self.retain} " \
                f"len={len(self.payload)}" if self.type == PUBLISH else ""
        return f"<{self.name} id={self.packet_id} reason=0x{self.reason:02x}{extra} " \
               f"reasons={self.reasons} props={self.props}>"


class Reader:
    """Reads fields front to back from a packet body."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        assert self.left() >= n, f"packet too short: need {n}, have {self.left()}"
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def string(self) -> str:
        return self.take(self.u16()).decode()

    def binary(self) -> bytes:
        return self.take(self.u16())

    def properties(self) -> dict:
        end = self.varint()
        end += self.pos
        props: dict = {}
        while self.pos < end:
            name, kind = PROPERTIES[self.varint()]
            value = {"byte": self.byte, "u16": self.u16, "u32": self.u32, "varint": self.varint,
                     "str": self.string, "bin": self.binary,
                     "pair": lambda: (self.string(), self.string())}[kind]()
            if name in REPEATABLE:
                props.setdefault(name, []).append(value)
            else:
                props[name] = value
        return props


def decode(first: int, body: bytes, version: int, raw: bytes = b"") -> Packet:
    """Decode one packet from its first byte and body (the bytes after the remaining length)."""
    p = Packet(type=first >> 4, flags=first & 0x0F, raw=raw)
    r = Reader(body)
    v5 = version == 5
    if p.type == CONNACK:
        p.session_present = bool(r.byte() & 0x01)
        p.reason = r.byte()
        if v5 and r.left():
            p.props = r.properties()
    elif p.type == PUBLISH:
        p.dup, p.qos, p.retain = bool(p.flags & 0x08), (p.flags >> 1) & 0x03, bool(p.flags & 1)
        p.topic = r.string()
        if p.qos:
            p.packet_id = r.u16()
        if v5:
            p.props = r.properties()
        p.payload = r.take(r.left())
    elif p.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p.packet_id = r.u16()
        if v5 and r.left():
            p.reason = r.byte()
            if r.left():
                p.props = r.properties()
    elif p.type in (SUBACK, UNSUBACK):
        p.packet_id = r.u16()
        if v5:
            p.props = r.properties()
        p.reasons = list(r.take(r.left()))
    elif p.type in (DISCONNECT, AUTH) and r.left():
        p.reason = r.byte()
        if r.left():
            p.props = r.properties()
    return p


# ---------------------------------------------------------------------------------------------
# A raw client
# ---------------------------------------------------------------------------------------------

class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class RawClient:
    """A TCP connection that sends bytes verbatim and reads whole packets back."""

    def __init__(self, host: str, port: int, version: int = 5, rcvbuf: int | None = None):
        """`rcvbuf` shrinks the socket's receive buffer (set before connecting, so the TCP
        window is small too): used to play a client that reads slowly or not at all."""
        self.version = version
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        # Whether the connection ended with a reset rather than the server's FIN: a reset
        # throws away what the server sent that this side had not read yet.
        self.reset = False

    @classmethod
    def over(cls, sock: socket.socket, version: int = 5) -> "RawClient":
        """A RawClient on a socket that is connected already (a TLS socket, say)."""
        r = cls.__new__(cls)
        r.version, r.sock, r.buf, r.eof, r.reset = version, sock, bytearray(), False, False
        return r

    # -- sending --------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str = "", **kw) -> Packet:
        """Send CONNECT and return the CONNACK."""
        self.send(connect(client_id, version=self.version, **kw))
        return self.expect(CONNACK)

    def publish(self, topic, payload=b"", **kw) -> None:
        self.send(publish(topic, payload, version=self.version, **kw))

    def subscribe(self, filters, packet_id: int = 1, props: dict | None = None) -> Packet:
        """SUBSCRIBE to [(filter, options byte)] (or one filter string at QoS 0); return SUBACK."""
        if isinstance(filters, str):
            filters = [(filters, 0)]
        self.send(subscribe(packet_id, filters, self.version, props))
        return self.expect(SUBACK)

    def ack(self, ptype: int, packet_id: int, reason: int = 0) -> None:
        self.send(ack(ptype, packet_id, reason, self.version))

    def disconnect(self, reason: int = 0, props: dict | None = None) -> None:
        self.send(disconnect(self.version, reason, props))

    # -- receiving ------------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        """Read more bytes into the buffer; raise Closed on EOF, TimeoutError at the deadline."""
        if self.eof:
            raise Closed()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no packet before the deadline") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.reset = True
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def recv(self, timeout: float = 5) -> Packet:
        """Return the next packet. Raises Closed if the server closes first, TimeoutError if
        nothing whole arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            header = self._header()
            if header and len(self.buf) >= header[0] + header[1]:
                size = header[0] + header[1]
                raw = bytes(self.buf[:size])
                del self.buf[:size]
                return decode(raw[0], raw[header[0]:], self.version, raw)
            self._fill(deadline)

    def _header(self) -> tuple[int, int] | None:
        """(fixed header length, remaining length) of the buffered packet, or None while the
        remaining length bytes are still incomplete."""
        length, multiplier = 0, 1
        for i in range(1, 5):
            if i >= len(self.buf):
                return None
            length += (self.buf[i] & 0x7F) * multiplier
            multiplier *= 128
            if not self.buf[i] & 0x80:
                return i + 1, length
        raise AssertionError("server sent a remaining length longer than 4 bytes")

    def expect(self, ptype: int, timeout: float = 5) -> Packet:
        """Return the next packet, asserting its type."""
        try:
            p = self.recv(timeout)
        except Closed:
            raise AssertionError(f"connection closed while waiting for {TYPE_NAMES[ptype]}")
        assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
        return p

    def recv_until_closed(self, timeout: float = 5) -> list[Packet]:
        """Read until the server closes the connection; return what arrived before the close.
        Fails if the connection is still open after `timeout` seconds."""
        packets = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                packets.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return packets
            except TimeoutError:
                raise AssertionError(
                    f"server did not close the connection within {timeout}s; got {packets}")

    def no_packet_within(self, seconds: float) -> bool:
        """True if no packet arrives (and the connection stays open) for `seconds`. Used only to
        prove that something does NOT happen, which needs a bounded wait by nature."""
        try:
            p = self.recv(seconds)
        except TimeoutError:
            return True
        except Closed:
            raise AssertionError("connection closed unexpectedly")
        raise AssertionError(f"unexpected packet {p!r}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
