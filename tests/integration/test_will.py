"""Will messages: when they are and are not published, their QoS and retain flag, and the v5
Will Delay Interval (delayed, cancelled by reconnecting, cut short by session expiry)."""

import time

import pytest

from helpers import V5, holds_for

WILL = {"topic": "will/t", "payload": b"gone", "qos": 1}


def watch(client, proto):
    """A client subscribed to will/t at QoS 2 that records the wills."""
    w = client(proto, "watcher")
    w.subscribe("will/t", 2)
    return w


def test_will_sent_on_abrupt_close(broker, raw, client, proto):
    """A client that closes its socket without DISCONNECT has its will published
    [MQTT-3.1.2-8]: the watcher receives the will payload at the will QoS (1), retain 0."""
    watcher = watch(client, proto)
    r = raw(proto)
    r.connect("dies", will=WILL)
    r.close()
    [msg] = watcher.wait_messages(1)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("will/t", b"gone", 1, False)


def test_no_will_on_clean_disconnect(broker, raw, client, proto):
    """A normal DISCONNECT (v5 reason 0x00) discards the will [MQTT-3.1.2-10]. After the
    server has closed the connection, a marker published on the will topic arrives and the
    will does not (checked over a short window)."""
    watcher = watch(client, proto)
    r = raw(proto)
    r.connect("polite", will=WILL)
    r.disconnect()
    assert r.recv_until_closed() == []
    client(proto, "pub").publish("will/t", b"marker", 1)
    watcher.wait_messages(1)
    assert holds_for(lambda: watcher.payloads() == [b"marker"], 0.5)


def test_v5_disconnect_with_will_message_publishes_will(broker, raw, client):
    """v5 DISCONNECT with reason 0x04 (Disconnect with Will Message) closes cleanly but still
    publishes the will (spec 3.14.2.1)."""
    watcher = watch(client, V5)
    r = raw(V5)
    r.connect("bye-with-will", will=WILL)
    r.disconnect(0x04)
    [msg] = watcher.wait_messages(1)
    assert msg.payload == b"gone"


@pytest.mark.ironsight_only(reason="Mosquitto 2.0 deletes the will on any DISCONNECT but 0x04")
@pytest.mark.parametrize("reason", [0x80, 0x83], ids=["unspecified", "implementation"])
def test_v5_disconnect_with_error_reason_publishes_will(broker, raw, client, reason):
    """Only a Normal disconnection (0x00) deletes the will [MQTT-3.1.2-10]: a client that
    disconnects with an error reason (0x80, 0x83) still has its will published."""
    watcher = watch(client, V5)
    r = raw(V5)
    r.connect("bye-with-error", will=WILL)
    r.disconnect(reason)
    [msg] = watcher.wait_messages(1)
    assert msg.payload == b"gone"


@pytest.mark.parametrize("will_qos", [0, 2])
def test_will_qos_and_retain_honoured(broker, raw, client, proto, will_qos):
    """The will is published with its Will QoS and Will Retain [MQTT-3.1.2-14, MQTT-3.1.2-17]:
    the live watcher (QoS 2 subscription) receives it at the will QoS with retain 0, and a
    subscriber that arrives afterwards receives the retained will with retain 1."""
    watcher = watch(client, proto)
    r = raw(proto)
    r.connect("retainer", will={"topic": "will/t", "payload": b"last words",
                                "qos": will_qos, "retain": True})
    r.close()
    [msg] = watcher.wait_messages(1)
    assert (msg.payload, msg.qos, msg.retain) == (b"last words", will_qos, False)
    late = client(proto, "late")
    late.subscribe("will/t", 2)
    [stored] = late.wait_messages(1)
    assert (stored.payload, stored.retain) == (b"last words", True)


def test_v5_will_delay_interval_delays_will(broker, raw, client):
    """v5 Will Delay Interval 2 s (session expiry 10 s): after an abrupt close the will is not
    published for about 2 s, then it is (spec 3.1.3.2.2). Timing test:
    no will within the first 1 s, will within 5 s."""
    watcher = watch(client, V5)
    r = raw(V5)
    r.connect("delayed", props={"session_expiry_interval": 10},
              will={**WILL, "props": {"will_delay_interval": 2}})
    r.close()
    closed_at = time.monotonic()
    assert holds_for(lambda: watcher.received() == [], 1.0)
    watcher.wait_messages(1, timeout=5)
    assert time.monotonic() - closed_at >= 1.5


def test_v5_will_not_sent_if_session_resumed_within_delay(broker, raw, client):
    """Reconnecting to the same session before the Will Delay Interval ends cancels the will
    [MQTT-3.1.3-9]: will delay 1 s, abrupt close, reconnect with clean start 0 at once; no will
    arrives over 2.5 s (more than twice the delay), while a marker published afterwards does."""
    watcher = watch(client, V5)
    r = raw(V5)
    connect = {"clean": False, "props": {"session_expiry_interval": 10},
               "will": {**WILL, "props": {"will_delay_interval": 1}}}
    r.connect("comeback", **connect)
    r.close()
    r2 = raw(V5)
    assert r2.connect("comeback", **connect).session_present is True
    assert holds_for(lambda: watcher.received() == [], 2.5)
    client(V5, "pub").publish("will/t", b"marker", 1)
    watcher.wait_messages(1)
    assert watcher.payloads() == [b"marker"]


def test_v5_will_sent_at_session_expiry_if_sooner_than_delay(broker, raw, client):
    """The will is published when the session ends, if that comes before the Will Delay
    Interval (spec 3.1.3.2.2): will delay 30 s but session expiry 1 s, abrupt close; the will
    arrives within 5 s, long before 30 s."""
    watcher = watch(client, V5)
    r = raw(V5)
    r.connect("short-session", props={"session_expiry_interval": 1},
              will={**WILL, "props": {"will_delay_interval": 30}})
    r.close()
    [msg] = watcher.wait_messages(1, timeout=5)
    assert msg.payload == b"gone"


def test_v5_will_properties_passed_through(broker, raw, client):
    """Will properties (user property, content type, response topic, correlation data) are
    published with the will (spec 3.1.3.2)."""
    watcher = watch(client, V5)
    r = raw(V5)
    r.connect("props-will", will={**WILL, "props": {
        "content_type": "text/plain", "response_topic": "will/reply",
        "correlation_data": b"\x00\x01", "user_property": [("k", "v")]}})
    r.close()
    [msg] = watcher.wait_messages(1)
    p = msg.properties
    assert p.ContentType == "text/plain"
    assert p.ResponseTopic == "will/reply"
    assert p.CorrelationData == b"\x00\x01"
    assert p.UserProperty == [("k", "v")]
