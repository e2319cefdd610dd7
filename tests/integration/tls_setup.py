"""TLS for the transport tests: ironsight's security objects for a test endpoint, the clients'
side (Python `ssl` contexts, mosquitto's TLS options, a raw MQTT client inside TLS), and the
bytes of a real ClientHello for the tests that stop a handshake halfway.

Certificates come from `pki.py` (the `pki` fixture). The configuration names files by absolute
path, except where a test copies them beside its configuration to change them later (reload and
revocation tests): ironsight takes a relative path relative to the configuration file.
"""

from __future__ import annotations

import socket
import ssl

import mqtt_raw
from pki import Pki

PROFILE = "TestSecurity"
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def tls_objects(pki: Pki | None, certificate: str | None = None, key: str | None = None,
                client_certificates: bool = False, require: bool | None = None,
                minimum: str | None = None, ca: str | None = None,
                crl: str | None = None, revalidate: bool = False) -> dict:
    """The configuration objects of a security profile `PROFILE` with the test server
    certificate (or `certificate` / `key`), optionally verifying client certificates against
    the test CA (or `ca`) and a revocation list file `crl`."""
    profile: dict = {"CertificateProfile": "TestServer"}
    objects: dict = {
        "CertificateProfile": {"TestServer": {
            "Certificate": certificate or pki.path("server.pem"),
            "Key": key or pki.path("server.key")}},
        "SecurityProfile": {PROFILE: profile},
    }
    if minimum:
        profile["MinimumProtocolMethod"] = minimum
    if client_certificates:
        profile["UseClientCertificate"] = True
        objects["TrustedCertificate"] = [{"SecurityProfileName": PROFILE,
                                          "TrustedCertificate": ca or pki.path("ca.pem")}]
    if require is not None:
        profile["RequireClientCertificate"] = require
    if crl:
        profile["CRLProfile"] = "TestRevocations"
        objects["CRLProfile"] = {"TestRevocations": {
            "CRLSource": crl, "RevalidateConnection": revalidate}}
    return objects


def tls_endpoint(transports: str = "mqtts,wss", **more) -> dict:
    """Endpoint attributes that use the profile of `tls_objects`."""
    return {"SecurityProfile": PROFILE, "Transports": transports, **more}


def client_context(pki: Pki, cert: str | None = None, ca: str = "ca.pem",
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client's TLS context that trusts `ca` only, checks the server's name, presents the
    client certificate `cert` (a `pki.pair` name such as "client") if given, and speaks only
    TLS `version` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path(ca))
    if cert:
        ctx.load_cert_chain(*pki.pair(cert))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def mosquitto_tls_args(pki: Pki, cert: str | None = None, version: str | None = None,
                       ca: str = "ca.pem") -> list[str]:
    """mosquitto_pub/sub's TLS options: trust `ca`, present `cert` if given, TLS `version`
    ("tlsv1.2" / "tlsv1.3") if given."""
    args = ["--cafile", pki.path(ca)]
    if cert:
        certificate, key = pki.pair(cert)
        args += ["--cert", certificate, "--key", key]
    if version:
        args += ["--tls-version", version]
    return args


def raw_tls(broker, ctx: ssl.SSLContext, version: int = 5) -> mqtt_raw.RawClient:
    """A raw MQTT client inside TLS: the handshake is done when this returns (a client
    certificate the server refuses shows at the first read, in TLS 1.3)."""
    sock = socket.create_connection((broker.host, broker.port), timeout=5)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return mqtt_raw.RawClient.over(ctx.wrap_socket(sock, server_hostname=broker.host),
                                       version)
    except BaseException:
        sock.close()
        raise


def tls_outcome(broker, ctx: ssl.SSLContext, client_id: str) -> str:
    """Connect with `ctx` and send CONNECT: "accepted" if a CONNACK comes back, else how the
    server refused: the TLS alert (an ssl.SSLError's reason) or "closed".

    With TLS 1.3 the client's side of the handshake ends before the server has looked at the
    client's certificate, so a refusal shows after the handshake, at the first read."""
    try:
        r = raw_tls(broker, ctx)
    except ssl.SSLError as e:
        return e.reason or str(e)
    try:
        r.send(mqtt_raw.connect(client_id, version=5))
        got = r.recv(5)
    except ssl.SSLError as e:
        return e.reason or str(e)
    except (mqtt_raw.Closed, ConnectionError):
        return "closed"
    finally:
        r.close()
    assert got.type == mqtt_raw.CONNACK, got
    return "accepted"


def tls_refused(broker, ctx: ssl.SSLContext, client_id: str) -> str:
    """How the server refused a client with `ctx` (see tls_outcome); fails if it accepted."""
    outcome = tls_outcome(broker, ctx, client_id)
    assert outcome != "accepted", "the server accepted the connection"
    return outcome


class MemoryTls:
    """A TLS client whose records the test sees: Python's TLS over memory buffers, on a plain
    socket. `seal(data)` returns the records that carry `data`, to be sent whole or in pieces
    with `sock.sendall`; `recv` and `sendall` make it usable as a socket by
    mqtt_raw.RawClient.over."""

    def __init__(self, broker, ctx: ssl.SSLContext):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=5)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=broker.host)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionResetError("closed during the handshake")
                self.incoming.write(data)
        self.sock.sendall(self.outgoing.read())

    def seal(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.seal(data))

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def recv(self, n: int) -> bytes:
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def close(self) -> None:
        self.sock.close()


def client_hello(server_hostname: str = "localhost") -> bytes:
    """The first flight of a real TLS client (Python's OpenSSL): one record holding a
    ClientHello, as a client would send it on connecting."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[0] == 0x16 and hello[5] == 0x01, "a handshake record holding a ClientHello"
    return hello
