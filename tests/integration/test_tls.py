"""MQTT over TLS: real TLS clients (mosquitto_pub/sub on OpenSSL, paho on Python's ssl) against
ironsight's SecurityProfile, CertificateProfile, TrustedCertificate and CRLProfile objects;
hostile handshakes (garbage, a ClientHello cut short, hundreds of them at once); certificate
reloads on SIGHUP; and TLS files the broker refuses at start.

Certificates are made by the tests (`pki.py`). Refusals are checked on both sides: the TLS
alert the client reads and the line the broker logs.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import mqtt_raw as m
from broker import Broker, port_open
from helpers import (V5, V311, Client, fd_targets, healthy, mosquitto_pub, mosquitto_sub,
                     read_until_closed, wait_for)
from tls_setup import (TLS12, TLS13, client_context, client_hello, mosquitto_tls_args, raw_tls,
                       tls_endpoint, tls_objects, tls_outcome, tls_refused)

pytestmark = [
    pytest.mark.ironsight_only(reason="ironsight's MessageSight-style TLS objects and logs"),
    pytest.mark.skipif(not shutil.which("mosquitto_sub"), reason="mosquitto clients not installed"),
]

DEBUG = {"IRONSIGHT_LOG": "debug"}
MOSQUITTO_VERSIONS = {V311: "mqttv311", V5: "5"}


def connected_line(client_id: str, secure: bool, common_name: str | None = None,
                   user: str | None = None) -> str:
    """The regular expression of the DEBUG line the core writes when it accepts a CONNECT.
    The common name and the user are tracing fields of type Option<&str>: Debug-quoted when
    present, and absent from the line when there is no client certificate, or no
    authenticated user (a profile that requires client certificates makes the CN the user)."""
    cn = "" if common_name is None else f' common_name="{re.escape(common_name)}"'
    who = "" if user is None else f' user="{re.escape(user)}"'
    return (rf"connected conn=\d+ peer=127\.0\.0\.1:\d+ secure={str(secure).lower()}{cn}{who} "
            rf"client_id={re.escape(client_id)} present=false$")


def test_mosquitto_over_tls_with_a_client_certificate(start_broker, pki, procs, proto):
    """mosquitto_sub and mosquitto_pub (OpenSSL) with the client certificate CN=device-1
    against a profile that requires client certificates: the subscriber receives the QoS 1
    message, and the broker's log shows both connections as secure=true with that CN. The
    publisher's goodbye (DISCONNECT, then TLS close_notify) is logged at DEBUG as the
    client's close, never as a refusal."""
    b = start_broker(endpoint=tls_endpoint(),
                     objects=tls_objects(pki, client_certificates=True), env=DEBUG)
    version = MOSQUITTO_VERSIONS[proto]
    tls = mosquitto_tls_args(pki, "client")
    out = mosquitto_sub(procs, b, "tls/t", f"tls-sub-{version}", version, extra=tls)
    done = mosquitto_pub(b, "tls/t", "over TLS", f"tls-pub-{version}", version, extra=tls)
    assert done.returncode == 0, done.stderr
    assert out.finish() == 0
    assert [x for x in out.lines if x.startswith("MSG")] == ["MSG 1 tls/t over TLS"]
    for client_id in (f"tls-sub-{version}", f"tls-pub-{version}"):
        assert len(b.log_lines(connected_line(client_id, True, "device-1", "device-1"))) == 1, client_id
    assert b.wait_log(r"DEBUG .*transport closed by the client .*close_notify")
    assert not b.log_lines("connection refused")


def test_minimum_protocol_tls13_refuses_a_tls12_client(start_broker, pki):
    """MinimumProtocolMethod TLSv1.3: a client that speaks only TLS 1.2 (Python's OpenSSL with
    maximum_version TLSv1.2) is refused with the protocol_version alert and the broker logs
    why; a TLS 1.3 client is accepted and the session is TLS 1.3. mosquitto's
    `--tls-version tlsv1.3` connects too. (mosquitto's `--tls-version tlsv1.2` is a minimum,
    not a maximum, so it negotiates TLS 1.3 and cannot play the refused client.)"""
    b = start_broker(endpoint=tls_endpoint(), objects=tls_objects(pki, minimum="TLSv1.3"))
    assert tls_refused(b, client_context(pki, version=TLS12), "tls12") == \
        "TLSV1_ALERT_PROTOCOL_VERSION"
    assert b.wait_log(r"connection refused .*TLS handshake failed: peer is incompatible")
    r = raw_tls(b, client_context(pki, version=TLS13))
    try:
        assert r.sock.version() == "TLSv1.3"
        assert r.connect("tls13").reason == 0
    finally:
        r.close()
    done = mosquitto_pub(b, "tls/v", "1.3", "mosquitto-tls13",
                         extra=mosquitto_tls_args(pki, version="tlsv1.3"))
    assert done.returncode == 0, done.stderr


def test_default_profile_accepts_tls12(start_broker, pki):
    """Without MinimumProtocolMethod (default TLSv1.2) a TLS 1.2-only client is accepted and
    the session is TLS 1.2: both versions the broker offers work."""
    b = start_broker(endpoint=tls_endpoint(), objects=tls_objects(pki))
    r = raw_tls(b, client_context(pki, version=TLS12))
    try:
        assert r.sock.version() == "TLSv1.2"
        assert r.connect("tls12").reason == 0
    finally:
        r.close()


# A client certificate the profile refuses: (pki name or None, the alert the client reads,
# what the broker's INFO line says after "TLS handshake failed: ").
REFUSED_CERTIFICATES = {
    "missing": (None, "TLSV13_ALERT_CERTIFICATE_REQUIRED", "peer sent no certificates"),
    "expired": ("expired", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                "invalid peer certificate: certificate expired"),
    "wrong-ca": ("stranger", "TLSV1_ALERT_UNKNOWN_CA", "invalid peer certificate: UnknownIssuer"),
}


@pytest.mark.parametrize("tls_version", [TLS12, TLS13], ids=["tls12", "tls13"])
@pytest.mark.parametrize("case", list(REFUSED_CERTIFICATES))
def test_client_certificate_refused(start_broker, pki, case, tls_version):
    """UseClientCertificate: a client without a certificate, with an expired one, or with one
    from a CA the profile does not trust is refused during the handshake, in TLS 1.2 and 1.3:
    Python's client reads the alert that names the reason, the broker logs "connection
    refused ... TLS handshake failed: <reason>", and mosquitto_pub with the same certificate
    fails ("The connection was lost", status 7). A good certificate from the trusted CA
    connects on the same broker."""
    cert, alert, logged = REFUSED_CERTIFICATES[case]
    b = start_broker(endpoint=tls_endpoint(), objects=tls_objects(pki, client_certificates=True))
    assert tls_refused(b, client_context(pki, cert, version=tls_version), f"refused-{case}") \
        == alert
    assert b.wait_log(rf"INFO .*connection refused .* error=TLS handshake failed: {logged}")
    done = mosquitto_pub(b, "tls/refused", "x", f"mosquitto-{case}",
                         extra=mosquitto_tls_args(pki, cert))
    assert (done.returncode, done.stderr.strip()) == (7, "Error: The connection was lost.")
    healthy(b, V5, tls=client_context(pki, "client", version=tls_version))
    done = mosquitto_pub(b, "tls/accepted", "x", "mosquitto-good",
                         extra=mosquitto_tls_args(pki, "client"))
    assert done.returncode == 0, done.stderr


def test_optional_client_certificate(start_broker, pki):
    """RequireClientCertificate false (ironsight's addition): a client without a certificate
    connects (secure, no common name in the log), one with a good certificate connects with
    its CN, and one with an expired certificate is still refused: a certificate that is
    presented must be valid."""
    b = start_broker(endpoint=tls_endpoint(), env=DEBUG,
                     objects=tls_objects(pki, client_certificates=True, require=False))
    anonymous = Client(b, V5, "no-certificate", tls=client_context(pki))
    named = Client(b, V311, "with-certificate", tls=client_context(pki, "client"))
    try:
        anonymous.connect()
        named.connect()
    finally:
        anonymous.close()
        named.close()
    assert len(b.log_lines(connected_line("no-certificate", True))) == 1
    assert len(b.log_lines(connected_line("with-certificate", True, "device-1"))) == 1
    assert tls_refused(b, client_context(pki, "expired"), "expired") == \
        "SSLV3_ALERT_CERTIFICATE_EXPIRED"


@pytest.mark.parametrize("cert, common_name", [("slash", "a/b"), ("wildcard", "*.example.com")],
                         ids=["slash", "wildcard"])
def test_common_name_reaches_the_connection_verbatim(start_broker, pki, cert, common_name):
    """A client certificate's CN with a slash or a leading `*.` reaches the connection as
    written: the broker's "connected" line carries common_name="a/b" or "*.example.com",
    neither split at the slash nor read as a pattern."""
    b = start_broker(endpoint=tls_endpoint(), env=DEBUG,
                     objects=tls_objects(pki, client_certificates=True))
    c = Client(b, V5, f"cn-{cert}", tls=client_context(pki, cert))
    try:
        c.connect()
        c.subscribe("cn/t", 1)
        assert c.publish("cn/t", b"me", 1) == 0
        assert c.wait_messages(1)[0].payload == b"me"
    finally:
        c.close()
    assert len(b.log_lines(connected_line(f"cn-{cert}", True, common_name, common_name))) == 1


# First bytes that are not a ClientHello, on an endpoint that takes only TLS (mqtts,wss):
# (bytes, what the broker answers before it closes, what it logs).
DECODE_ERROR_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])  # fatal decode_error
ALERT_OR_NOTHING = "one fatal alert record, or nothing"
NOT_HELLOS = {
    # A handshake record type and then a record header that is no TLS version.
    "tls-record-junk": (b"\x16" + b"\x00junk" * 10, DECODE_ERROR_ALERT,
                        "TLS handshake failed: received corrupt message"),
    # A well-formed record header holding a ClientHello of one byte.
    "short-client-hello": (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", DECODE_ERROR_ALERT,
                           "TLS handshake failed: received corrupt message"),
    # A record whose handshake message announces more than a handshake message may hold:
    # "hello" is type 0x68 with length 0x656c6c; the other a ClientHello of 70,000 bytes.
    # Regression: both crashed the broker (a panic in rustls's process_tls_records, called
    # with an empty buffer from Tls::handshake's error path, aborted the process).
    "record-of-text": (b"\x16\x03\x01\x00\x05hello", ALERT_OR_NOTHING, "TLS handshake failed: "),
    "client-hello-of-70000-bytes": (b"\x16\x03\x01\x00\x04\x01\x01\x11\x70", ALERT_OR_NOTHING,
                                    "TLS handshake failed: "),
    "mqtt-connect": (m.connect("plain", version=5), b"",
                     "MQTT without TLS is not accepted on this endpoint"),
    "http-get": (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", b"",
                 "WebSocket without TLS is not accepted on this endpoint"),
    "binary-junk": (b"\xff" * 16, b"", "MQTT without TLS is not accepted on this endpoint"),
}


@pytest.mark.parametrize("case", list(NOT_HELLOS))
def test_garbage_instead_of_a_client_hello(start_broker, pki, case):
    """Bytes that are no ClientHello on a TLS-only endpoint: TLS-looking junk (first byte
    0x16) gets a fatal decode_error alert and the close (a handshake message announced larger
    than the limit: the close, with or without a fatal alert); anything else (an MQTT CONNECT,
    an HTTP request, junk) is closed without a byte, as a transport the endpoint does not
    accept. The broker logs the refusal at INFO, stays up and still serves a TLS client."""
    data, answer, logged = NOT_HELLOS[case]
    b = start_broker(endpoint=tls_endpoint(), objects=tls_objects(pki))
    with socket.create_connection((b.host, b.port), timeout=5) as s:
        s.sendall(data)
        got = read_until_closed(s)
    b.wait_log(rf"INFO .*connection refused .* error={logged}|panicked at")
    assert not b.log_lines("panicked at"), "the broker panicked (see its log)"
    if answer == ALERT_OR_NOTHING:
        fatal_alert = rb"\x15\x03[\x01-\x04]\x00\x02\x02."
        assert got == b"" or re.fullmatch(fatal_alert, got, re.DOTALL), got
    else:
        assert got == answer
    healthy(b, V5, tls=client_context(pki))


def test_half_handshake_is_closed_after_connect_timeout(start_broker, pki):
    """A client that sends the first 40 bytes of a real ClientHello and then nothing is
    closed by the broker (without a byte) once Broker.ConnectTimeout (2 s here) has passed:
    not at once, and within 2 s plus the timer's tick and some slack."""
    b = start_broker(endpoint=tls_endpoint(), env=DEBUG,
                     objects={**tls_objects(pki), "Broker": {"ConnectTimeout": 2}})
    hello = client_hello()
    with socket.create_connection((b.host, b.port), timeout=5) as s:
        s.sendall(hello[:40])
        started = time.monotonic()
        got = read_until_closed(s, timeout=8)
        waited = time.monotonic() - started
    assert got == b""
    assert 1.0 <= waited <= 6.0, waited
    assert b.log_lines("no CONNECT in time")
    healthy(b, V5, tls=client_context(pki))


class Collected:
    """Everything a binary stream yields, gathered by a thread, so a test can wait for bytes."""

    def __init__(self, stream):
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for chunk in iter(lambda: stream.read1(65536), b""):
            self.data += chunk

    def wait(self, needle: bytes, count: int = 1, timeout: float = 5) -> None:
        wait_for(lambda: self.data.count(needle) >= count, timeout,
                 message=lambda: f"{count} x {needle!r} in {self.data[-300:]!r}")


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
@pytest.mark.parametrize("command", ["k", "K"], ids=["update", "update-requested"])
def test_tls13_key_updates_keep_the_session(start_broker, pki, procs, command):
    """TLS 1.3 KeyUpdate (RFC 8446 4.6.3), which ironsight's own record layer must follow:
    `openssl s_client` sends a KeyUpdate three times ("k": the client's keys change; "K": the
    client also asks the broker to change its keys), and after each one the MQTT session goes
    on in both directions: a PUBLISH to the client's own subscription comes back and PINGREQ
    gets PINGRESP. s_client reads its standard input as data except for a read that starts
    with "k" or "K", so each write waits for the answer to the one before."""
    b = start_broker(endpoint=tls_endpoint(), objects=tls_objects(pki), env=DEBUG)
    p = procs(["openssl", "s_client", "-connect", f"{b.host}:{b.port}", "-tls1_3",
               "-CAfile", pki.path("ca.pem"), "-servername", "localhost"],
              stdin=subprocess.PIPE)
    out, err = Collected(p.stdout), Collected(p.stderr)

    def send(data: bytes) -> None:
        p.stdin.write(data)
        p.stdin.flush()

    send(m.connect(f"key-update-{command}", version=5))
    b.wait_log(rf"connected .* client_id=key-update-{command} ")
    send(m.subscribe(1, [("keys/t", 0)], 5))
    out.wait(b"\x90\x04\x00\x01\x00\x00")  # SUBACK, granted QoS 0
    for n in range(1, 4):
        send(command.encode() + b"\n")
        err.wait(b"KEYUPDATE", n)
        payload = f"after key update {n}".encode()
        send(m.publish("keys/t", payload, version=5))
        out.wait(payload)
        send(m.pingreq())
        out.wait(b"\xd0\x00", n)  # PINGRESP
    p.stdin.close()
    assert p.wait(5) == 0
    assert b.wait_log(r"transport closed by the client .*close_notify")
    assert not b.log_lines("connection refused")


def broker_sockets(b) -> int:
    return sum(1 for t in fd_targets(b.pid) if t.startswith("socket:"))


def test_many_half_handshakes_are_all_closed_and_memory_stays_bounded(start_broker, pki):
    """200 connections that each send the first 40 bytes of a ClientHello and stall: the
    broker holds them (200 more sockets), closes every one after ConnectTimeout (2 s), and
    its resident memory stays bounded: under 16 MiB above the start while they are held
    (80 KiB each; they take about 4 KiB on this broker, so only a gross leak or a buffer
    reserved per handshake would fail this), and within 8 MiB of the start once they are
    gone. Then it serves a TLS client."""
    count = 200
    b = start_broker(endpoint=tls_endpoint(),
                     objects={**tls_objects(pki), "Broker": {"ConnectTimeout": 2}})
    healthy(b, V5, tls=client_context(pki))
    sockets_before, rss_before = broker_sockets(b), b.rss_kb()
    head = client_hello()[:40]
    conns = []
    try:
        for _ in range(count):
            s = socket.create_connection((b.host, b.port), timeout=5)
            s.sendall(head)
            conns.append(s)
        wait_for(lambda: broker_sockets(b) >= sockets_before + count, 5,
                 message="the broker to hold every stalled handshake")
        rss_held = b.rss_kb()
        deadline = time.monotonic() + 2 + 6
        for s in conns:
            assert read_until_closed(s, max(0.1, deadline - time.monotonic())) == b""
    finally:
        for s in conns:
            s.close()
    wait_for(lambda: broker_sockets(b) <= sockets_before, 5,
             message="the broker to release the sockets")
    rss_after = b.rss_kb()
    assert rss_held - rss_before < 16 * 1024, (rss_before, rss_held)
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)
    healthy(b, V311, tls=client_context(pki))


def in_effect_everywhere(probe, timeout: float = 3) -> None:
    """Wait until 5 new connections in a row see what `probe` checks. The reloader logs "TLS
    contexts reloaded" when it publishes the new contexts; each shard takes them up at its next
    poll (every 50 ms), so a connection made right after the line can still meet the old ones.
    The kernel spreads new connections over the shards, so a streak of 5 covers them."""
    streak = 0

    def five_in_a_row():
        nonlocal streak
        streak = streak + 1 if probe() else 0
        return streak >= 5
    wait_for(five_in_a_row, timeout, message="every shard to use the reloaded files")


def presents(b, pki, name: str) -> bool:
    """Whether the broker's TLS handshake presents the certificate file `name` of the pki."""
    served = ssl.get_server_certificate((b.host, b.port), timeout=5)
    return ssl.PEM_cert_to_DER_cert(served) == \
        ssl.PEM_cert_to_DER_cert((pki.dir / name).read_text())


def copy_files(pki, directory, names: dict[str, str]) -> None:
    """Copy pki files into `directory` under new names ({source: destination})."""
    for source, destination in names.items():
        shutil.copyfile(pki.path(source), directory / destination)


def test_sighup_reloads_the_server_certificate(start_broker, pki, tmp_path, proto):
    """SIGHUP re-reads the certificate files without dropping connections: a client connected
    under the old certificate keeps its session and exchanges messages after the reload; a new
    client that trusts only the new CA connects; a new client that trusts only the old CA is
    refused by its own verification (the broker now presents the new certificate)."""
    copy_files(pki, tmp_path, {"server.pem": "server.pem", "server.key": "server.key"})
    # Relative paths: ironsight reads them beside its configuration file (tmp_path).
    b = start_broker(endpoint=tls_endpoint(), env=DEBUG,
                     objects=tls_objects(None, certificate="server.pem", key="server.key"))
    old = Client(b, proto, "before-reload", tls=client_context(pki))
    new = Client(b, proto, "after-reload", tls=client_context(pki, ca="ca2.pem"))
    try:
        old.connect()
        old.subscribe("reload/#", 1)
        copy_files(pki, tmp_path, {"server2.pem": "server.pem", "server2.key": "server.key"})
        b.hangup()
        in_effect_everywhere(lambda: presents(b, pki, "server2.pem"))
        assert old.publish("reload/old", b"across the reload", 1) == 0
        assert old.wait_messages(1)[0].payload == b"across the reload"
        new.connect()
        assert new.publish("reload/new", b"from the new CA's side", 1) == 0
        assert old.wait_messages(2)[1].payload == b"from the new CA's side"
        stale = Client(b, proto, "old-ca-only", tls=client_context(pki))
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            stale.connect()
        stale.close()
        assert refused.value.reason == "CERTIFICATE_VERIFY_FAILED"
        assert not old.disconnected.is_set()
    finally:
        old.close()
        new.close()
    assert len(b.log_lines(r"connected .* client_id=before-reload ")) == 1, "never reconnected"


def test_failed_reload_changes_nothing(start_broker, pki, tmp_path):
    """A SIGHUP that finds a key that does not fit the certificate logs an error naming the
    object and attribute and changes nothing: the connected client stays, and a new client
    that trusts the old CA still connects (the old certificate is still presented)."""
    copy_files(pki, tmp_path, {"server.pem": "server.pem", "server.key": "server.key"})
    b = start_broker(endpoint=tls_endpoint(),
                     objects=tls_objects(None, certificate="server.pem", key="server.key"))
    c = Client(b, V5, "stays", tls=client_context(pki))
    try:
        c.connect()
        copy_files(pki, tmp_path, {"server2.pem": "server.pem"})  # the old key stays
        b.proc.send_signal(signal.SIGHUP)
        line = b.wait_log(r"ERROR .*reload refused")[0].string
        assert 'CertificateProfile "TestServer", attribute Key: does not fit the certificate' \
            in line, line
        assert not b.log_lines("TLS contexts reloaded")
        assert presents(b, pki, "server.pem")
        c.subscribe("still/#", 1)
        assert c.publish("still/here", b"yes", 1) == 0
        assert c.wait_messages(1)[0].payload == b"yes"
        healthy(b, V311, tls=client_context(pki))
    finally:
        c.close()


def test_revoked_certificate_disconnects_its_connection(start_broker, pki, tmp_path, proto):
    """CRLProfile with RevalidateConnection: after a new CRL naming one client's certificate
    is written and the broker is sent SIGHUP, that client's live connection is closed by the
    broker (logged "client certificate revoked; connection closed"; an MQTT 5 client is told
    why with DISCONNECT 0x87 Not authorized; its will is published, as for any connection the
    server ends); reconnecting with that certificate is refused with the
    certificate_revoked alert; a client whose certificate is not revoked stays connected and
    keeps exchanging messages."""
    copy_files(pki, tmp_path, {"empty.crl": "crl.pem"})
    b = start_broker(endpoint=tls_endpoint(), env=DEBUG, objects=tls_objects(
        pki, client_certificates=True, crl="crl.pem", revalidate=True))
    doomed = Client(b, proto, "doomed", tls=client_context(pki, "revoked"),
                    will={"topic": "crl/will", "payload": b"doomed is gone", "qos": 1})
    kept = Client(b, proto, "kept", tls=client_context(pki, "client"))
    try:
        doomed.connect()
        kept.connect()
        kept.subscribe("crl/#", 1)
        copy_files(pki, tmp_path, {"revoking.crl": "crl.pem"})
        b.hangup()
        assert doomed.disconnected.wait(5), "the revoked client is still connected"
        if proto == V5:
            assert doomed.disconnect_reason == 0x87, doomed.disconnect_reason
        assert len(b.wait_log("client certificate revoked; connection closed")) == 1
        assert kept.wait_messages(1)[0].payload == b"doomed is gone"
        in_effect_everywhere(lambda: tls_outcome(b, client_context(pki, "revoked"), "doomed")
                             == "SSLV3_ALERT_CERTIFICATE_REVOKED")
        assert b.wait_log(r"TLS handshake failed: invalid peer certificate: Revoked")
        assert not kept.disconnected.is_set()
        assert kept.publish("crl/alive", b"still here", 1) == 0
        assert kept.wait_messages(2)[1].payload == b"still here"
    finally:
        doomed.close()
        kept.close()


def test_crl_without_revalidation_keeps_live_connections(start_broker, pki, tmp_path):
    """Without RevalidateConnection a new CRL applies to new handshakes only: the connected
    holder of the revoked certificate stays, while a new connection with it is refused."""
    copy_files(pki, tmp_path, {"empty.crl": "crl.pem"})
    b = start_broker(endpoint=tls_endpoint(), objects=tls_objects(
        pki, client_certificates=True, crl="crl.pem", revalidate=False))
    holder = raw_tls(b, client_context(pki, "revoked"))
    try:
        assert holder.connect("holder").reason == 0
        copy_files(pki, tmp_path, {"revoking.crl": "crl.pem"})
        b.hangup()
        in_effect_everywhere(lambda: tls_outcome(b, client_context(pki, "revoked"), "newcomer")
                             == "SSLV3_ALERT_CERTIFICATE_REVOKED")
        holder.send(m.pingreq())
        assert holder.expect(m.PINGRESP)
        assert not b.log_lines("client certificate revoked")
    finally:
        holder.close()


# TLS files the broker cannot use: (configuration objects from the pki, the message).
def bad_files(pki, tmp_path):
    return {
        "missing-certificate": (
            tls_objects(pki, certificate=str(tmp_path / "absent.pem")),
            f'CertificateProfile "TestServer", attribute Certificate: cannot read '
            f'{tmp_path / "absent.pem"}: '),
        "mismatched-key": (
            tls_objects(pki, key=pki.path("other-key.key")),
            'CertificateProfile "TestServer", attribute Key: does not fit the certificate'),
        # A relative path is read beside the configuration file.
        "missing-key": (
            tls_objects(pki, key="absent.key"),
            f'CertificateProfile "TestServer", attribute Key: cannot read '
            f'{tmp_path / "absent.key"}: '),
        "missing-ca": (
            tls_objects(pki, client_certificates=True, ca="absent-ca.pem"),
            f'TrustedCertificate "#1", attribute TrustedCertificate: cannot read '
            f'{tmp_path / "absent-ca.pem"}: '),
        "missing-crl": (
            tls_objects(pki, client_certificates=True, crl="absent.crl"),
            f'CRLProfile "TestRevocations", attribute CRLSource: cannot read '
            f'{tmp_path / "absent.crl"}: '),
    }


@pytest.mark.parametrize("mode", ["check-config", "start"])
@pytest.mark.parametrize("case", ["missing-certificate", "mismatched-key", "missing-key",
                                  "missing-ca", "missing-crl"])
def test_bad_tls_files_are_refused(pki, tmp_path, case, mode):
    """A certificate, key, CA or CRL file that is missing, or a key that does not fit the
    certificate: `--check-config` and a normal start both exit with status 2 and a message
    that names the object, the object's name and the attribute (and the file); a normal
    start does not listen."""
    objects, message = bad_files(pki, tmp_path)[case]
    b = Broker(tmp_path, endpoint=tls_endpoint(), objects=objects)
    argv = b.command() + (["--check-config"] if mode == "check-config" else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"ironsight: {message}" in done.stderr, done.stderr
    assert not port_open(b.host, b.port)
