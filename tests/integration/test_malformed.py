"""Malformed and hostile input over raw sockets, with the exact bytes spelled out. Every test
ends by checking that the broker still serves a healthy client (and the broker fixture fails
the test if the process died)."""

import socket
import threading
import time

from pathlib import Path

import pytest

import mqtt_raw as m
from helpers import V5, V311, Client, fd_targets, healthy, wait_for


def v5_only_on_ironsight(reason):
    """Parametrize `proto` so that v3.1.1 runs everywhere and v5 only under ironsight."""
    return pytest.mark.parametrize("proto", [V311, pytest.param(
        V5, marks=pytest.mark.ironsight_only(reason=reason))], ids=["v311", "v5"])


def broker_holds(broker, sock) -> bool:
    """Whether the broker process still has its end of `sock`'s connection open: the kernel's
    socket for that connection (from /proc/net/tcp) is one of the broker's file descriptors.
    A socket the broker closed stays listed while TCP finishes, but no process holds it."""
    ip, port = sock.getsockname()
    client_end = f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if remote == client_end and int(local.split(":")[1], 16) == broker.port:
            return f"socket:[{inode}]" in fd_targets(broker.pid)
    return False


def assert_closed(r, proto, v5_reasons=()):
    """The server closes the connection. Before the close, v3.1.1 gets nothing; v5 gets
    nothing or a DISCONNECT whose reason is in `v5_reasons` (the spec says the server SHOULD
    send one, 4.13.1). Where ironsight must send it, tests use assert_disconnect."""
    packets = r.recv_until_closed()
    if proto == V5:
        assert packets == [] or [(p.type, p.reason) for p in packets] in \
            [[(m.DISCONNECT, reason)] for reason in v5_reasons], packets
    else:
        assert packets == [], packets


def assert_disconnect(r, proto, v5_reason):
    """v5: exactly one DISCONNECT with `v5_reason`, then the close; v3.1.1: just the close."""
    packets = r.recv_until_closed()
    expected = [(m.DISCONNECT, v5_reason)] if proto == V5 else []
    assert [(p.type, p.reason) for p in packets] == expected


def test_garbage_closes_connection(broker, raw):
    """Bytes that are not MQTT as the first thing on a connection: 0xF0 0xF1 0xF2 0xF3 0xF4 ..
    (an AUTH whose remaining length runs past 4 bytes). The server closes the connection
    without answering [MQTT-3.1.0-1] and serves the next client."""
    r = raw(4)
    r.send(bytes(range(0xF0, 0x100)) * 8)
    assert r.recv_until_closed() == []
    healthy(broker)


@pytest.mark.ironsight_only(reason="ironsight serves MQTT over WebSocket on the MQTT port; "
                            "Mosquitto closes")
def test_http_request_gets_an_http_answer(broker):
    """An HTTP request that is not a WebSocket upgrade, on the MQTT port (which also takes
    MQTT over WebSocket): the server answers `426 Upgrade Required`, then closes, and serves
    the next client."""
    with socket.create_connection((broker.host, broker.port), timeout=5) as s:
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: broker.example.com\r\n"
                  b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), answer
    assert b"\r\nUpgrade: websocket\r\n" in answer
    healthy(broker)


def test_non_connect_first_byte_closes_before_body(broker, raw):
    """The first byte alone shows that a packet is not a CONNECT [MQTT-3.1.0-1], so the server
    must not wait for the body it declares: `40 20` (a PUBACK, remaining length 32) followed by
    only 12 bytes is closed at once. A server that waits for the other 20 bytes would hold the
    connection open until the connect timeout."""
    r = raw(4)
    r.send(b"\x40\x20" + b"\x00" * 12)
    assert r.recv_until_closed(timeout=2) == []
    healthy(broker)


@pytest.mark.parametrize("first", [
    pytest.param(b"\xc0\x00", id="pingreq"),                      # PINGREQ
    pytest.param(b"\x30\x05\x00\x01a" b"hi", id="publish"),       # PUBLISH "a" QoS 0 "hi"
    pytest.param(b"\x82\x06\x00\x01\x00\x01a\x00", id="subscribe"),  # SUBSCRIBE id 1 "a" QoS 0
])
def test_first_packet_not_connect_closes_connection(broker, raw, first):
    """A well-formed packet other than CONNECT as the first packet: closed, no reply
    [MQTT-3.1.0-1]."""
    r = raw(4)
    r.send(first)
    assert r.recv_until_closed() == []
    healthy(broker)


@v5_only_on_ironsight("Mosquitto 2.0.11 closes without sending DISCONNECT 0x82")
def test_second_connect_is_protocol_error(broker, raw, proto):
    """A second CONNECT on a connection is a Protocol Error [MQTT-3.1.0-2]: v5 gets DISCONNECT
    0x82 and the close, v3.1.1 the close."""
    r = raw(proto)
    assert r.connect("twice").reason == 0
    r.send(m.connect("twice", version=proto))
    assert_disconnect(r, proto, 0x82)
    healthy(broker, proto)


def test_unknown_protocol_level_refused(broker, raw):
    """CONNECT with protocol level 6: CONNACK return code 0x01 (unacceptable protocol version)
    in the 3.1.1 format, exactly `20 02 00 01`, then close [MQTT-3.1.2-2]."""
    r = raw(4)
    r.send(bytes([
        0x10, 13,                          # CONNECT, remaining length 13
        0x00, 0x04, *b"MQTT",              # protocol name
        0x06,                              # protocol level 6 (does not exist)
        0x02,                              # flags: clean session
        0x00, 0x3C,                        # keep alive 60
        0x00, 0x01, *b"x",                 # client id "x"
    ]))
    assert [p.raw for p in r.recv_until_closed()] == [b"\x20\x02\x00\x01"]
    healthy(broker)


def test_reserved_fixed_header_flags_close_connection(broker, raw, proto):
    """SUBSCRIBE must have fixed-header flags 0b0010 [MQTT-3.8.1-1]; with 0b0000 it is malformed
    [MQTT-2.1.3-1]: v5 gets DISCONNECT 0x81 (Malformed Packet) and the close, v3.1.1 the close."""
    r = raw(proto)
    r.connect("flags")
    props = b"\x00" if proto == V5 else b""
    body = b"\x00\x01" + props + b"\x00\x01a" + b"\x00"  # id 1, [props], filter "a", QoS 0
    r.send(bytes([0x80, len(body)]) + body)                # SUBSCRIBE with flags 0b0000
    assert_disconnect(r, proto, 0x81)
    healthy(broker, proto)


def test_publish_qos3_closes_connection(broker, raw, proto):
    """A PUBLISH with both QoS bits set (QoS 3) is malformed [MQTT-3.3.1-4]: closed (v5 may get
    DISCONNECT 0x81 first)."""
    r = raw(proto)
    r.connect("qos3")
    props = b"\x00" if proto == V5 else b""
    body = b"\x00\x01a" + b"\x00\x01" + props + b"hi"      # topic "a", packet id 1, payload
    r.send(bytes([0x36, len(body)]) + body)                 # PUBLISH flags 0b0110: QoS 3
    assert_closed(r, proto, v5_reasons=(0x81,))
    healthy(broker, proto)


@v5_only_on_ironsight("Mosquitto 2.0.11 sends DISCONNECT 0x82 instead of 0x90")
def test_publish_topic_with_wildcard_rejected(broker, raw, proto):
    """A PUBLISH topic name must not contain wildcards [MQTT-3.3.2-2]: topic `a/+` -> v5
    DISCONNECT 0x90 (Topic Name invalid) and close, v3.1.1 close. Not delivered to a `#`
    subscriber."""
    watcher = Client(broker, proto, "watcher")
    try:
        watcher.connect()
        watcher.subscribe("#", 0)
        r = raw(proto)
        r.connect("wild")
        r.publish("a/+", b"x")
        assert_disconnect(r, proto, 0x90)
        healthy(broker, proto)
        assert all(msg.topic != "a/+" for msg in watcher.received())
    finally:
        watcher.close()


def test_publish_topic_invalid_utf8_closes_connection(broker, raw, proto):
    """A topic name that is not valid UTF-8 (0xFF 0xFE) makes the packet malformed
    [MQTT-1.5.4-1]: closed (v5 may get DISCONNECT 0x81 first)."""
    r = raw(proto)
    r.connect("utf8")
    r.publish(b"a/\xff\xfe", b"x")
    assert_closed(r, proto, v5_reasons=(0x81,))
    healthy(broker, proto)


def test_huge_declared_length_closed_without_buffering(broker, raw, proto):
    """A PUBLISH that declares a remaining length of 250 MB (far above the 4 MB default
    MaxMessageSize) is refused from its fixed header: the connection is closed within 2 s while
    the client has sent only a few bytes of body, and the broker's RSS does not grow by more
    than 4 MB (it did not allocate or read the body). v5 may get DISCONNECT 0x95 first."""
    r = raw(proto)
    r.connect("liar")
    rss_before = broker.rss_kb()
    declared = 250 * 1024 * 1024
    r.send(b"\x30" + m.varint(declared) + b"\x00\x01a" + b"x" * 100)  # PUBLISH "a", 100 B
    start = time.monotonic()
    assert_closed(r, proto, v5_reasons=(0x95,))
    assert time.monotonic() - start < 2
    assert broker.rss_kb() - rss_before < 4 * 1024
    healthy(broker, proto)


@v5_only_on_ironsight("Mosquitto 2.0.11 closes without sending DISCONNECT 0x82")
@pytest.mark.parametrize("bad", ["a/#/b", "a+/b", "$share/g"])
def test_subscribe_invalid_filter_is_protocol_error(broker, raw, proto, bad):
    """SUBSCRIBE with a valid filter and a malformed one (`#` not last [MQTT-4.7.1-1], `+` not a
    whole level [MQTT-4.7.1-2], a share without a filter [MQTT-4.8.2-2]): a protocol error, so
    v5 gets DISCONNECT 0x82 and the close, v3.1.1 the close [MQTT-4.13.1-1]."""
    r = raw(proto)
    r.connect("badfilter")
    r.send(m.subscribe(1, [("ok/t", m.sub_options(1)), (bad, m.sub_options(0))], proto))
    assert_disconnect(r, proto, 0x82)
    healthy(broker, proto)


def flood_subscriptions(r, n):
    """Pipeline n SUBSCRIBE packets (one filter each, ids 1..n), then read the n SUBACKs and
    return their reason codes in packet id order."""
    r.send(b"".join(m.subscribe(i, [(f"flood/{i}", m.sub_options(1))], r.version)
                    for i in range(1, n + 1)))
    acks = [r.expect(m.SUBACK, timeout=10) for _ in range(n)]
    assert [a.packet_id for a in acks] == list(range(1, n + 1))
    return [a.reasons[0] for a in acks]


@pytest.mark.broker_config(max_subscriptions=100)
def test_subscription_flood_keeps_broker_bounded(broker, raw, proto):
    """2,000 SUBSCRIBEs pipelined by one client, with MaxSubscriptionsPerSession 100: every
    one is answered by a SUBACK (granted QoS 1 or refused with 0x80 and above), the broker's RSS
    grows by less than 16 MB, and it still serves a healthy client."""
    r = raw(proto)
    r.connect("flooder")
    rss_before = broker.rss_kb()
    reasons = flood_subscriptions(r, 2000)
    assert all(x == 1 or x >= 0x80 for x in reasons)
    assert broker.rss_kb() - rss_before < 16 * 1024
    healthy(broker, proto)


@pytest.mark.ironsight_only(reason="Mosquitto has no per-session subscription limit")
@pytest.mark.broker_config(max_subscriptions=100)
def test_subscriptions_over_session_limit_refused(broker, raw, proto):
    """MaxSubscriptionsPerSession 100: of 2,000 pipelined SUBSCRIBEs the first 100 are granted
    and the rest refused, v5 with 0x97 (Quota exceeded), v3.1.1 with 0x80 (Failure); the
    connection stays up."""
    r = raw(proto)
    r.connect("flooder")
    reasons = flood_subscriptions(r, 2000)
    assert reasons[:100] == [1] * 100
    assert reasons[100:] == [0x97 if proto == V5 else 0x80] * 1900
    r.send(m.pingreq())
    r.expect(m.PINGRESP)
    healthy(broker, proto)


@pytest.mark.broker_config(max_messages=100)
def test_slow_consumer_does_not_grow_broker_unbounded(broker, raw, client, proto):
    """A client subscribes at QoS 0 and never reads (4 KB receive buffer) while 20 MB (320 x
    64 KB) are published to its topic. With MaxMessages 100 the broker must drop rather than
    buffer: all 320 publishes complete within 30 s (the publisher is not stalled), another
    client is served meanwhile, and RSS grows by less than 14 MB, well under 20 MB."""
    slow = raw(proto, rcvbuf=4096)
    slow.connect("never-reads")
    slow.subscribe([("slow/t", m.sub_options(0))])
    rss_before = broker.rss_kb()
    pub = client(proto, "pub")
    chunk = b"z" * (64 * 1024)
    done = threading.Event()

    def publish_all():
        for _ in range(320):
            pub.publish("slow/t", chunk, 0, timeout=30)
        done.set()

    t = threading.Thread(target=publish_all, daemon=True)
    t.start()
    healthy(broker, proto)
    wait_for(done.is_set, timeout=30, message="320 publishes of 64 KB")
    t.join(5)
    healthy(broker, proto)
    growth_kb = broker.rss_kb() - rss_before
    assert growth_kb < 14 * 1024, f"RSS grew by {growth_kb} kB"


@pytest.mark.ironsight_only(reason="closing a connection whose peer never reads, after a grace")
def test_stuck_client_is_cut_off_after_keepalive(broker, raw, client, proto):
    """A client with keep alive 1 s subscribes, then neither reads nor sends while 4 MB are
    published to it, so its socket is full when its keep alive runs out. The broker must not
    wait for it to read its last bytes forever: the connection is gone from the broker (its
    socket closed) within keep alive x 1.5 plus a few seconds' grace, while the stuck client
    still has not read anything."""
    stuck = raw(proto, rcvbuf=4096)
    stuck.connect("stuck", keepalive=1)
    stuck.subscribe([("stuck/t", m.sub_options(0))])
    # Retried: /proc/net/tcp is read in pages, and a page boundary can miss an entry.
    assert wait_for(lambda: broker_holds(broker, stuck.sock), timeout=1)
    pub = client(proto, "pub")
    for _ in range(64):
        pub.publish("stuck/t", b"s" * (64 * 1024), 0, timeout=30)
    assert wait_for(lambda: not broker_holds(broker, stuck.sock), timeout=15,
                    message="the stuck connection closed by the broker")
    healthy(broker, proto)


def test_client_that_never_reads_cannot_pile_up_answers(broker, raw, proto):
    """A client that never reads pipelines PINGREQs, each answered by a 2-byte PINGRESP, up to
    40 MB of them (20 million packets). The answers must not pile up in the broker: once its
    socket to the client is full, the broker stops reading from it, the client's sends stall,
    and the broker's RSS grows by less than 16 MB. Other clients are served meanwhile."""
    r = raw(proto, rcvbuf=4096)
    r.connect("never-reads")
    rss_before = broker.rss_kb()
    chunk = m.pingreq() * 32768
    sent, stalled_since = 0, None
    r.sock.setblocking(False)
    deadline = time.monotonic() + 30
    while sent < 40 * 1024 * 1024 and time.monotonic() < deadline:
        try:
            sent += r.sock.send(chunk[sent % len(chunk):])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 2:
                break  # the broker has stopped reading: the expected outcome
            time.sleep(0.01)
    healthy(broker, proto)
    growth_kb = broker.rss_kb() - rss_before
    assert growth_kb < 16 * 1024, f"RSS grew by {growth_kb} kB after {sent} bytes of PINGREQ"


@pytest.mark.ironsight_only(reason="lingering close; Mosquitto resets such a connection")
def test_last_bytes_survive_input_left_unread(broker, raw, client, proto):
    """A slow client (4 KB receive buffer) has 200 messages of 1 KB on their way to it, then
    sends a malformed SUBSCRIBE followed by 256 KB more that the broker will never read. Closing
    a socket with unread input makes the kernel send a reset, which destroys whatever is still
    in the broker's send queue; the broker must instead end its side with a FIN and discard
    the rest of the input, so that the client reads every message, then (v5) DISCONNECT 0x81,
    then the close."""
    slow = raw(proto, rcvbuf=4096)
    slow.connect("slow-closing")
    slow.subscribe([("linger/t", m.sub_options(0))])
    pub = client(proto, "pub")
    for i in range(200):  # QoS 1, acknowledged: routed before the malformed packet arrives
        pub.publish("linger/t", bytes([i]) * 1024, 1)
    props = b"\x00" if proto == V5 else b""
    body = b"\x00\x01" + props + b"\x00\x01a" + b"\x00"
    slow.sock.setblocking(False)
    pending = bytes([0x80, len(body)]) + body + b"\x00" * (256 * 1024)
    deadline = time.monotonic() + 2
    while pending and time.monotonic() < deadline:
        try:
            pending = pending[slow.sock.send(pending):]
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break  # reset: the failure this test is about, seen by the reads below
    slow.sock.setblocking(True)
    packets = slow.recv_until_closed(timeout=10)
    publishes = [p.payload for p in packets if p.type == m.PUBLISH]
    assert publishes == [bytes([i]) * 1024 for i in range(200)]
    tail = [(p.type, p.reason) for p in packets if p.type != m.PUBLISH]
    assert tail == ([(m.DISCONNECT, 0x81)] if proto == V5 else [])
    healthy(broker, proto)
