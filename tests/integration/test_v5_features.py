"""MQTT 5 features: topic aliases, message expiry, flow control (Receive Maximum), subscription
identifiers, No Local, property pass-through, request/response, assigned client identifiers."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import mqtt_raw as m
from broker import broker_config
from helpers import V5, V311, holds_for, props, wait_for


# ---- topic aliases ---------------------------------------------------------------------------

def test_client_topic_alias_resolved_for_subscribers(broker, raw, client):
    """Client-to-server topic alias (spec 3.3.2.3.4): a raw v5 publisher sends topic al/t with
    alias 1, then an empty topic with alias 1; a v3.1.1 subscriber receives both messages on
    al/t (aliases are per connection and never leak to subscribers)."""
    sub = client(V311, "sub311")
    sub.subscribe("al/t", 1)
    r = raw(V5)
    assert r.connect("aliaser").props.get("topic_alias_maximum", 0) >= 1
    r.publish("al/t", b"first", qos=1, packet_id=1, props={"topic_alias": 1})
    r.expect(m.PUBACK)
    r.publish("", b"second", qos=1, packet_id=2, props={"topic_alias": 1})
    r.expect(m.PUBACK)
    msgs = sub.wait_messages(2)
    assert [(x.topic, x.payload) for x in msgs] == [("al/t", b"first"), ("al/t", b"second")]


@pytest.mark.broker_config(topic_aliases=5)
def test_topic_alias_above_maximum_is_rejected(broker, raw):
    """CONNACK announces Topic Alias Maximum 5 (from MaxTopicAliases); a PUBLISH with alias 6
    gets DISCONNECT 0x94 (Topic Alias invalid) and the connection is closed [MQTT-3.3.2-9]."""
    r = raw(V5)
    assert r.connect("too-high").props.get("topic_alias_maximum") == 5
    r.publish("al/t", b"x", props={"topic_alias": 6})
    assert [(p.type, p.reason) for p in r.recv_until_closed()] == [(m.DISCONNECT, 0x94)]


def test_unknown_topic_alias_is_protocol_error(broker, raw):
    """A PUBLISH with an empty topic and an alias that was never set has no topic at all:
    DISCONNECT 0x82 (Protocol Error) and close (spec 3.3.2.3.4)."""
    r = raw(V5)
    r.connect("unknown-alias")
    r.publish("", b"x", props={"topic_alias": 3})
    assert [(p.type, p.reason) for p in r.recv_until_closed()] == [(m.DISCONNECT, 0x82)]


def test_server_topic_aliases_resolve_to_the_right_topic(broker, raw, client):
    """Server-to-client aliases: a raw v5 subscriber announcing Topic Alias Maximum 4 receives
    messages on two alternating topics. Each PUBLISH either carries the topic (optionally
    setting an alias), or an empty topic and an alias set earlier; decoding with that table
    must give back the published topic sequence, no alias may exceed 4 [MQTT-3.3.2-10] and
    none is 0 [MQTT-3.3.2-8]. A subscriber that announces no maximum gets no alias at all
    [MQTT-3.3.2-11]. (A broker that never sends aliases passes trivially; ironsight may.)"""
    r = raw(V5)
    r.connect("alias-sub", props={"topic_alias_maximum": 4})
    r.subscribe([("sa/#", m.sub_options(0))])
    plain = raw(V5)
    plain.connect("no-alias-sub")
    plain.subscribe([("sa/#", m.sub_options(0))])
    pub = client(V5, "pub")
    topics = ["sa/one", "sa/two"] * 4
    for i, topic in enumerate(topics):
        pub.publish(topic, str(i).encode(), 0)
    table, resolved = {}, []
    for _ in topics:
        p = r.expect(m.PUBLISH)
        alias = p.props.get("topic_alias")
        if alias is not None:
            assert 1 <= alias <= 4, alias
            if p.topic:
                table[alias] = p.topic
            else:
                assert alias in table, f"alias {alias} used before it was set"
        resolved.append(p.topic or table[alias])
    assert resolved == topics
    for _ in topics:
        p = plain.expect(m.PUBLISH)
        assert p.topic and "topic_alias" not in p.props


# ---- message expiry --------------------------------------------------------------------------

def offline_v5_subscriber(client, name, topic):
    """A paho v5 persistent session (expiry 60 s) subscribed to `topic` at QoS 1, now offline."""
    c = client(V5, name, connect=False, clean=False, session_expiry=60)
    c.connect()
    c.subscribe(topic, 1)
    c.disconnect()
    return c


def test_v5_expired_message_not_delivered_to_offline_session(broker, client):
    """A message queued for an offline session whose Message Expiry Interval (1 s) passes is
    never delivered [MQTT-3.3.2-5]; a message without expiry queued after it is delivered and
    serves as the marker. Timing test: waits 2.5 s."""
    sub = offline_v5_subscriber(client, "sleeper", "mx/t")
    pub = client(V5, "pub")
    pub.publish("mx/t", b"short-lived", 1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish("mx/t", b"durable", 1)
    time.sleep(2.5)  # expiry is under test
    assert sub.reconnect().session_present is True
    sub.wait_messages(1)
    assert holds_for(lambda: sub.payloads() == [b"durable"], 0.2)


def test_v5_message_expiry_interval_decreases_while_queued(broker, client):
    """A message that waited in the queue is delivered with its Message Expiry Interval reduced
    by the time waited [MQTT-3.3.2-6]: published with 10 s, delivered after >= 1.5 s offline,
    it carries 9 s or less (and more than 0)."""
    sub = offline_v5_subscriber(client, "sleeper", "mx/t")
    client(V5, "pub").publish("mx/t", b"aging", 1,
                              properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=10))
    time.sleep(1.5)  # time in the queue is under test
    sub.reconnect()
    [msg] = sub.wait_messages(1)
    assert 0 < msg.properties.MessageExpiryInterval <= 9


# ---- flow control ----------------------------------------------------------------------------

def slow_subscriber(raw, client):
    """A raw v5 client with Receive Maximum 2 subscribed to rm/t at QoS 1, and 5 QoS 1
    messages "0".."4" published to it."""
    r = raw(V5)
    r.connect("slow", props={"receive_maximum": 2})
    r.subscribe([("rm/t", m.sub_options(1))])
    pub = client(V5, "pub")
    for i in range(5):
        pub.publish("rm/t", f"{i}".encode(), 1)
    return r


def test_server_respects_client_receive_maximum(broker, raw, client):
    """The server stops at the client's Receive Maximum [MQTT-3.3.4-9]: a raw client with
    Receive Maximum 2 that does not ack receives 2 of the 5 messages and then nothing (0.5 s
    window); once it acks each message as it comes, all 5 arrive in order."""
    r = slow_subscriber(raw, client)
    got = [r.expect(m.PUBLISH), r.expect(m.PUBLISH)]
    assert r.no_packet_within(0.5), "a third PUBLISH before any PUBACK"
    for p in got:
        r.ack(m.PUBACK, p.packet_id)
    while len(got) < 5:
        got.append(r.expect(m.PUBLISH))
        r.ack(m.PUBACK, got[-1].packet_id)
    assert [p.payload for p in got] == [b"0", b"1", b"2", b"3", b"4"]


@pytest.mark.ironsight_only(reason="Mosquitto 2.0.11 sends two more PUBLISHes after one PUBACK, "
                            "leaving 3 unacknowledged against Receive Maximum 2")
def test_receive_maximum_window_slides_one_per_ack(broker, raw, client):
    """The window slides exactly [MQTT-3.3.4-9]: with Receive Maximum 2 and two PUBLISHes
    unacknowledged, one PUBACK releases exactly one more PUBLISH (0.3 s window), the next
    PUBACK the next one."""
    r = slow_subscriber(raw, client)
    got = [r.expect(m.PUBLISH), r.expect(m.PUBLISH)]
    for n in range(3):
        r.ack(m.PUBACK, got[n].packet_id)
        got.append(r.expect(m.PUBLISH))
        assert r.no_packet_within(0.3), f"more than one PUBLISH released by PUBACK {n + 1}"
    assert [p.payload for p in got] == [b"0", b"1", b"2", b"3", b"4"]


def test_connack_announces_receive_maximum(broker, raw):
    """CONNACK carries Receive Maximum = MaxInflightMessages (spec 3.2.2.3.3): 128 by default,
    and 5 after the broker is restarted with MaxInflightMessages 5."""
    assert raw(V5).connect("rm").props.get("receive_maximum") == 128
    broker.restart(broker_config(max_inflight=5))
    assert raw(V5).connect("rm").props.get("receive_maximum") == 5


@pytest.mark.ironsight_only(reason="Mosquitto 2.0 answers the extra QoS 2 PUBLISH with PUBREC "
                            "0x97 instead of DISCONNECT 0x93")
@pytest.mark.broker_config(max_inflight=5)
def test_client_exceeding_server_receive_maximum_is_disconnected(broker, raw):
    """A client that sends more unacknowledged QoS 2 PUBLISHes (no PUBREL) than the server's
    Receive Maximum (5) gets DISCONNECT 0x93 (Receive Maximum exceeded) and is closed
    (spec 3.3.4): the first 5 get PUBREC, the 6th ends the connection."""
    r = raw(V5)
    assert r.connect("greedy").props.get("receive_maximum") == 5
    for i in range(1, 7):
        r.publish("rm/t", b"x", qos=2, packet_id=i)
    packets = r.recv_until_closed()
    assert [p.type for p in packets[:5]] == [m.PUBREC] * 5
    assert [(p.type, p.reason) for p in packets[5:]] == [(m.DISCONNECT, 0x93)]


# ---- subscription identifiers ----------------------------------------------------------------

def test_subscription_identifier_delivered(broker, client):
    """A message matching a subscription made with Subscription Identifier 7 carries 7
    [MQTT-3.3.4-3]; one matching a subscription without an identifier carries none."""
    c = client(V5, "ids")
    c.subscribe("sid/a", 1, sub_id=7)
    c.subscribe("sid/b", 1)
    pub = client(V5, "pub")
    pub.publish("sid/a", b"a", 1)
    pub.publish("sid/b", b"b", 1)
    c.wait_messages(2)
    [a], [b] = c.received("sid/a"), c.received("sid/b")
    assert a.properties.SubscriptionIdentifier == [7]
    assert not hasattr(b.properties, "SubscriptionIdentifier")


def test_overlapping_subscriptions_identifiers_and_qos(broker, client):
    """Two overlapping subscriptions, `ov/#` (id 1, QoS 0) and `ov/a` (id 2, QoS 1): the spec
    allows one copy or one per subscription [MQTT-3.3.4-2]. Either way the copies together
    carry both ids, one copy has QoS 1 (the maximum), and a single copy must carry both ids
    [MQTT-3.3.4-4]."""
    c = client(V5, "overlap")
    c.subscribe("ov/#", 0, sub_id=1)
    c.subscribe("ov/a", 1, sub_id=2)
    pub = client(V5, "pub")
    pub.publish("ov/a", b"x", 1)
    pub.publish("ov/a", b"marker", 1)
    # Copies of the marker follow the copies of x per subscription (same topic and QoS), so
    # once the two counts agree and stay so briefly, every copy of x is in.
    count = lambda p: sum(1 for x in c.received() if x.payload == p)  # noqa: E731
    wait_for(lambda: count(b"marker") >= 1 and count(b"x") == count(b"marker"))
    assert holds_for(lambda: count(b"x") == count(b"marker"), 0.2)
    copies = [x for x in c.received() if x.payload == b"x"]
    assert 1 <= len(copies) <= 2
    ids = sorted(i for x in copies for i in x.properties.SubscriptionIdentifier)
    assert ids == [1, 2]
    assert max(x.qos for x in copies) == 1


@pytest.mark.ironsight_only(reason="Mosquitto 2.0 sends one copy per matching subscription")
def test_overlapping_subscriptions_one_copy_with_all_identifiers(broker, client):
    """ironsight sends ONE copy for overlapping subscriptions, at the maximum QoS of the
    matching subscriptions [MQTT-3.3.4-2] and with every matching identifier [MQTT-3.3.4-4]:
    `ov/#` (id 1, QoS 0) and `ov/+` (id 2, QoS 1) and `ov/a` (no id, QoS 2), publish QoS 2 ->
    one message, QoS 2, identifiers {1, 2}."""
    c = client(V5, "overlap")
    c.subscribe("ov/#", 0, sub_id=1)
    c.subscribe("ov/+", 1, sub_id=2)
    c.subscribe("ov/a", 2)
    pub = client(V5, "pub")
    pub.publish("ov/a", b"x", 2)
    pub.publish("ov/a", b"marker", 2)
    c.wait_messages(1)
    wait_for(lambda: b"marker" in c.payloads())
    copies = [x for x in c.received() if x.payload == b"x"]
    assert len(copies) == 1, f"{len(copies)} copies"
    assert copies[0].qos == 2
    assert sorted(copies[0].properties.SubscriptionIdentifier) == [1, 2]


# ---- No Local --------------------------------------------------------------------------------

def test_no_local(broker, client):
    """No Local [MQTT-3.8.3-3]: a client subscribed to nl/own with No Local does not get its own
    publishes back, but does get another client's publish to nl/own; subscribed to nl/echo
    without No Local it gets its own publishes back."""
    c = client(V5, "self")
    c.subscribe("nl/own", 1, no_local=True)
    c.subscribe("nl/echo", 1)
    c.publish("nl/own", b"mine", 1)
    c.publish("nl/echo", b"echo", 1)
    client(V5, "other").publish("nl/own", b"theirs", 1)
    wait_for(lambda: {b"echo", b"theirs"} <= set(c.payloads()))
    assert holds_for(lambda: b"mine" not in c.payloads(), 0.2)


# ---- pass-through ----------------------------------------------------------------------------

USER_PROPS = [("a", "1"), ("b", "2"), ("a", "3"), ("ünï", "cødé")]


def test_publish_properties_passed_through(broker, client):
    """User Properties (order and duplicates kept [MQTT-3.3.2-18]), Response Topic, Correlation
    Data, Payload Format Indicator and Content Type reach a v5 subscriber unchanged
    [MQTT-3.3.2-4, MQTT-3.3.2-15, MQTT-3.3.2-16, MQTT-3.3.2-20]; a v3.1.1 subscriber gets the
    same payload without them."""
    sub5 = client(V5, "sub5")
    sub5.subscribe("pt/t", 1)
    sub3 = client(V311, "sub3")
    sub3.subscribe("pt/t", 1)
    client(V5, "pub").publish("pt/t", "text ✓".encode(), 1, properties=props(
        PacketTypes.PUBLISH, UserProperty=USER_PROPS, ResponseTopic="pt/reply",
        CorrelationData=b"\x00\xffid", PayloadFormatIndicator=1,
        ContentType="text/plain; charset=utf-8"))
    [msg] = sub5.wait_messages(1)
    p = msg.properties
    assert msg.payload == "text ✓".encode()
    assert p.UserProperty == USER_PROPS
    assert p.ResponseTopic == "pt/reply"
    assert p.CorrelationData == b"\x00\xffid"
    assert p.PayloadFormatIndicator == 1
    assert p.ContentType == "text/plain; charset=utf-8"
    assert sub3.wait_messages(1)[0].payload == "text ✓".encode()


def test_request_response(broker, client):
    """Request/response (spec 4.10): the requester subscribes to its response topic and sends a
    request with Response Topic and Correlation Data; the responder answers on that topic with
    the same Correlation Data; the requester gets the answer and can match it."""
    requester = client(V5, "requester")
    requester.subscribe("rr/reply/requester", 1)
    responder = client(V5, "responder")
    responder.subscribe("rr/service", 1)
    requester.publish("rr/service", b"2+2?", 1, properties=props(
        PacketTypes.PUBLISH, ResponseTopic="rr/reply/requester", CorrelationData=b"req-42"))
    [req] = responder.wait_messages(1)
    responder.publish(req.properties.ResponseTopic, b"4", 1, properties=props(
        PacketTypes.PUBLISH, CorrelationData=req.properties.CorrelationData))
    [reply] = requester.wait_messages(1)
    assert reply.topic == "rr/reply/requester"
    assert (reply.payload, reply.properties.CorrelationData) == (b"4", b"req-42")


# ---- client identifiers ----------------------------------------------------------------------

def test_v5_assigned_client_identifier(broker, client):
    """A v5 CONNECT with an empty client id is accepted and the CONNACK carries an Assigned
    Client Identifier [MQTT-3.2.2-16], non-empty and different for two clients."""
    ids = []
    for _ in range(2):
        c = client(V5, "")
        assigned = getattr(c.connack.props, "AssignedClientIdentifier", "")
        assert assigned
        ids.append(assigned)
    assert ids[0] != ids[1]


def test_v311_empty_client_id(broker, raw):
    """v3.1.1 with a zero-length client id: accepted with clean session 1 (return code 0)
    [MQTT-3.1.3-7]; refused with clean session 0 by CONNACK return code 2 (identifier
    rejected), exact bytes `20 02 00 02`, then close [MQTT-3.1.3-8]."""
    ok = raw(4)
    assert ok.connect("", clean=True).reason == 0
    no = raw(4)
    no.send(m.connect("", version=4, clean=False))
    packets = no.recv_until_closed()
    assert [p.raw for p in packets] == [b"\x20\x02\x00\x02"]
