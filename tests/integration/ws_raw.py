"""MQTT over WebSocket with exact bytes (RFC 6455), for the tests that are about frames.

paho and MQTT.js speak WebSocket correctly and hide its frames; these tests need to send what a
correct client never sends (unmasked frames, text frames, one byte per frame) and to see the
server's close frames and pongs. `WsClient` is `mqtt_raw.RawClient` over WebSocket: its
`connect`, `subscribe`, `expect` work as there, with every MQTT write sent as one binary frame
and every binary frame's payload read back as MQTT bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time

import mqtt_raw
from helpers import read_until_closed

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade_request(host: str, path: str = "/mqtt", protocols: str | None = "mqtt",
                    key: bytes | None = None, method: str = "GET",
                    upgrade: bool = True) -> bytes:
    """An HTTP/1.1 upgrade request as a browser sends it; `protocols` None leaves out
    Sec-WebSocket-Protocol, `upgrade` False leaves out Upgrade and Connection."""
    key = key or base64.b64encode(os.urandom(16))
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    lines += [f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13"]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def accept_for(key: bytes) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def frame(opcode: int, payload: bytes = b"", fin: bool = True, masked: bool = True,
          mask: bytes = b"\x37\xfa\x21\x3d", length: int | None = None) -> bytes:
    """A frame. `length` overrides the announced payload length (to announce a frame larger
    than what is sent)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def http_exchange(host: str, port: int, request: bytes, timeout: float = 5) -> bytes:
    """Send `request` on a fresh connection and return everything the server sends until it
    closes (fails if it stays open `timeout` seconds)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_until_closed(sock, timeout)


class WsClient(mqtt_raw.RawClient):
    """A raw MQTT client over WebSocket (over TLS with `tls`). The upgrade happens in the
    constructor; `.response` is the server's answer to it (status line and headers).
    `prefix` is sent before anything else (a PROXY protocol header)."""

    def __init__(self, host: str, port: int, version: int = 5, path: str = "/mqtt",
                 protocols: str = "mqtt", tls: ssl.SSLContext | None = None,
                 prefix: bytes = b""):
        super().__init__(host, port, version)
        if prefix:
            self.sock.sendall(prefix)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        self.wire = bytearray()        # bytes read from the socket, not yet deframed
        self.controls: list[tuple[int, bytes]] = []  # control frames received, in order
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(upgrade_request(host, path, protocols, key))
        self.response = self._read_response()
        assert self.response.startswith("HTTP/1.1 101 "), self.response
        assert f"Sec-WebSocket-Accept: {accept_for(key)}" in self.response, self.response

    def _read_response(self, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.wire:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the upgrade; got {bytes(self.wire)!r}"
            self.wire += chunk
        head, _, rest = bytes(self.wire).partition(b"\r\n\r\n")
        self.wire = bytearray(rest)
        return head.decode()

    # -- sending --------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """MQTT bytes as one masked binary frame."""
        self.sock.sendall(frame(BINARY, data))

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.sock.sendall(frame(opcode, payload, **kw))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- receiving ------------------------------------------------------------------------------
    def _take_frame(self) -> tuple[int, bool, bytes] | None:
        """(opcode, fin, payload) of the first whole frame in `wire`, removed from it."""
        if len(self.wire) < 2:
            return None
        b0, b1 = self.wire[0], self.wire[1]
        assert not b1 & 0x80, "a server's frames are never masked (RFC 6455 5.1)"
        n, at = b1 & 0x7F, 2
        if n == 126:
            if len(self.wire) < 4:
                return None
            n, at = struct.unpack(">H", self.wire[2:4])[0], 4
        elif n == 127:
            if len(self.wire) < 10:
                return None
            n, at = struct.unpack(">Q", self.wire[2:10])[0], 10
        if len(self.wire) < at + n:
            return None
        payload = bytes(self.wire[at:at + n])
        del self.wire[:at + n]
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def _read_wire(self, deadline: float) -> None:
        if self.eof:
            raise mqtt_raw.Closed()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("nothing before the deadline") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise mqtt_raw.Closed()
        self.wire += chunk

    def next_frame(self, timeout: float = 5) -> tuple[int, bool, bytes]:
        """The next frame, whatever its kind: (opcode, fin, payload). Raises Closed at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._take_frame()
            if got:
                return got
            self._read_wire(deadline)

    def _fill(self, deadline: float) -> None:
        """RawClient's hook: more MQTT bytes. Data frames' payloads go to the MQTT buffer;
        control frames are kept in `controls`; a close frame ends the stream."""
        while True:
            got = self._take_frame()
            if got is None:
                self._read_wire(deadline)
                continue
            opcode, _, payload = got
            if opcode in (BINARY, CONTINUATION):
                self.buf += payload
                return
            self.controls.append((opcode, payload))
            if opcode == CLOSE:
                self.eof = True
                raise mqtt_raw.Closed()

    def expect_close(self, timeout: float = 5) -> int:
        """Read until the server's close frame; return its status code after checking that the
        server then closes the connection."""
        deadline = time.monotonic() + timeout
        while True:
            opcode, _, payload = self.next_frame(max(0.0, deadline - time.monotonic()))
            if opcode == CLOSE:
                break
        assert len(payload) >= 2, f"close frame without a status code: {payload!r}"
        rest = read_until_closed(self.sock, max(0.1, deadline - time.monotonic()))
        assert rest == b"", f"bytes after the close frame: {rest!r}"
        return struct.unpack(">H", payload[:2])[0]
