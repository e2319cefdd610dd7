"""Retained messages: set, replace, clear, the retain flag on delivery, Retain As Published,
Retain Handling, wildcard matching and v5 message expiry of retained messages."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from helpers import V5, holds_for, props, wait_for


def retained_count(c, topic, payload=None):
    return sum(1 for msg in c.received(topic) if msg.retain and
               (payload is None or msg.payload == payload))


def test_retained_set_replace_clear(broker, client, proto):
    """Publishing retained "one" then "two" leaves only "two": a new subscriber gets exactly
    that, with retain 1 [MQTT-3.3.1-5, MQTT-3.3.1-9]. A retained PUBLISH with an empty payload
    clears it [MQTT-3.3.1-6]: a later subscriber to `ret/#` gets the retained marker on another
    topic but nothing on the cleared one."""
    pub = client(proto, "pub")
    pub.publish("ret/a", b"one", 1, retain=True)
    pub.publish("ret/a", b"two", 1, retain=True)
    s1 = client(proto, "s1")
    s1.subscribe("ret/a", 1)
    [msg] = s1.wait_messages(1)
    assert (msg.payload, msg.retain) == (b"two", True)
    assert holds_for(lambda: len(s1.received()) == 1, 0.2)

    pub.publish("ret/a", b"", 1, retain=True)
    pub.publish("ret/marker", b"m", 1, retain=True)
    s2 = client(proto, "s2")
    s2.subscribe("ret/#", 1)
    s2.wait_messages(1, topic="ret/marker")
    assert holds_for(lambda: s2.received("ret/a") == [], 0.3)


def test_retain_flag_zero_for_live_one_for_stored(broker, client, proto):
    """A subscriber that exists when a retained message is published receives it with retain 0
    (it is a live delivery) [MQTT-3.3.1-9 (3.1.1) / MQTT-3.3.1-12 (v5, Retain As Published 0)];
    a subscriber that arrives later receives the stored copy with retain 1."""
    live = client(proto, "live")
    live.subscribe("rf/t", 1)
    client(proto, "pub").publish("rf/t", b"r", 1, retain=True)
    [msg] = live.wait_messages(1)
    assert (msg.payload, msg.retain) == (b"r", False)
    late = client(proto, "late")
    late.subscribe("rf/t", 1)
    [msg] = late.wait_messages(1)
    assert (msg.payload, msg.retain) == (b"r", True)


def test_v5_retain_as_published(broker, client):
    """v5 Retain As Published: a live delivery keeps the publisher's retain flag for the
    subscriber that set it (retain 1) and not for the one that did not (retain 0)
    [MQTT-3.3.1-12, MQTT-3.3.1-13]. A non-retained publish arrives with retain 0 for both."""
    rap = client(V5, "rap")
    rap.subscribe("rap/t", 1, retain_as_published=True)
    plain = client(V5, "plain")
    plain.subscribe("rap/t", 1)
    pub = client(V5, "pub")
    pub.publish("rap/t", b"kept", 1, retain=True)
    pub.publish("rap/t", b"not", 1, retain=False)
    assert [(x.payload, x.retain) for x in rap.wait_messages(2)] == [(b"kept", True),
                                                                     (b"not", False)]
    assert [(x.payload, x.retain) for x in plain.wait_messages(2)] == [(b"kept", False),
                                                                       (b"not", False)]


@pytest.mark.parametrize("handling,first,again", [(0, 1, 1), (1, 1, 0), (2, 0, 0)],
                         ids=["rh0-always", "rh1-if-new", "rh2-never"])
def test_v5_retain_handling(broker, client, handling, first, again):
    """v5 Retain Handling: 0 sends retained messages on every SUBSCRIBE, 1 only when the
    subscription is new (not on re-subscribing the same filter), 2 never [MQTT-3.3.1-9,
    MQTT-3.3.1-10, MQTT-3.3.1-11]. After each SUBSCRIBE the publisher sends a live message on
    the same topic; once it has arrived, the retained copy would have been sent before it.
    A short extra window guards against a broker that sends retained messages late."""
    pub = client(V5, "pub")
    pub.publish("rh/t", b"stored", 1, retain=True)
    s = client(V5, "s")
    for expected, live in ((first, b"live1"), (first + again, b"live2")):
        s.subscribe("rh/t", 1, retain_handling=handling)
        pub.publish("rh/t", live, 1)
        wait_for(lambda: live in s.payloads("rh/t"), message=f"live message {live}")
        assert holds_for(lambda: retained_count(s, "rh/t", b"stored") == expected, 0.2), \
            [(x.payload, x.retain) for x in s.received()]


def test_retained_messages_match_wildcards(broker, client, proto):
    """Retained messages are matched against the new subscription's filter with wildcards:
    `rw/+/c` gets rw/a/c and rw/b/c (not rw/a/d), `rw/#` gets all three, each with retain 1."""
    pub = client(proto, "pub")
    for topic in ("rw/a/c", "rw/b/c", "rw/a/d"):
        pub.publish(topic, topic.encode(), 1, retain=True)
    plus = client(proto, "plus")
    plus.subscribe("rw/+/c", 1)
    hash_ = client(proto, "hash")
    hash_.subscribe("rw/#", 1)
    hash_.wait_messages(3)
    plus.wait_messages(2)
    assert sorted(x.topic for x in hash_.received()) == ["rw/a/c", "rw/a/d", "rw/b/c"]
    assert all(x.retain for x in hash_.received() + plus.received())
    assert holds_for(lambda: sorted(x.topic for x in plus.received()) == ["rw/a/c", "rw/b/c"],
                     0.2)


def test_v5_retained_message_expires(broker, client):
    """A retained message with Message Expiry Interval 1 is delivered to a subscriber that
    arrives in time (with an interval of at most 1), and is gone for one that arrives after
    it expired [MQTT-3.3.2-5]; a retained message without expiry on a sibling topic is the
    marker. Timing test: waits 2.5 s."""
    pub = client(V5, "pub")
    pub.publish("rx/short", b"brief", 1, retain=True,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish("rx/forever", b"stays", 1, retain=True)
    early = client(V5, "early")
    early.subscribe("rx/#", 1)
    early.wait_messages(2)
    [brief] = early.received("rx/short")
    assert brief.properties.MessageExpiryInterval <= 1
    time.sleep(2.5)  # expiry is under test
    late = client(V5, "late")
    late.subscribe("rx/#", 1)
    late.wait_messages(1, topic="rx/forever")
    assert holds_for(lambda: late.received("rx/short") == [], 0.3)
