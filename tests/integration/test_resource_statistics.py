"""MessageSight's `$SYS/ResourceStatistics/<ObjectType>` topics against the real binary with
paho-mqtt: a monitoring client granted them by a TopicPolicy receives the Server, Endpoint and
Memory figures every two seconds as Amlen's JSON (Version, NodeName, TimeStamp, ObjectType,
then the same figures as the REST monitor), and they follow the traffic the test makes; a
session that outlives its connection may not subscribe, `#` does not reach them, and a client
no policy grants them is refused."""

from __future__ import annotations

import json
import socket
from datetime import datetime

import pytest

from helpers import V5, V311, Client, holds_for, wait_for

pytestmark = pytest.mark.ironsight_only(reason="MessageSight's $SYS/ResourceStatistics topics")

ROOT = "$SYS/ResourceStatistics/"
NOT_AUTHORIZED = {V5: 0x87, V311: 0x80}
PERSISTENT_REFUSED = {V5: 0x83, V311: 0x80}


@pytest.fixture
def broker(start_broker):
    """2 shards; `monitor*` clients may subscribe to the statistics, everyone to everything
    else (`*` grants no `$SYS` topic)."""
    policies = {
        "Monitoring": {"Topic": ROOT + "*", "ClientID": "monitor*", "ActionList": "Subscribe"},
        "Apps": {"Topic": "*", "ClientID": "*", "ActionList": "Publish,Subscribe"},
    }
    return start_broker(objects={"TopicPolicy": policies},
                        endpoint={"TopicPolicies": ",".join(policies)}, args=["--shards", "2"])


def figures(client: Client, object_type: str) -> list[dict]:
    with client.lock:
        return [json.loads(m.payload) for m in client.messages
                if m.topic == ROOT + object_type]


def latest(client: Client, object_type: str, ready=lambda f: True, timeout: float = 10) -> dict:
    """The newest figures of `object_type` for which `ready` holds, waiting for them."""
    def found():
        matching = [f for f in figures(client, object_type) if ready(f)]
        return matching[-1] if matching else None
    return wait_for(found, timeout, message=f"{object_type} figures")


def test_the_figures_follow_the_traffic(broker):
    """Proves the three topics: each message carries Amlen's header (the version, this host's
    name, an ISO time, the object type), they come every two seconds, QoS 0, and their figures
    count what the test did: three connections, five messages read, the
    endpoint on the port the broker listens on, the process's resident memory."""
    monitor = Client(broker, V5, "monitor-1")
    monitor.connect()
    assert monitor.subscribe(ROOT + "+", 1) == [1]
    subscriber = Client(broker, V311, "app-reader")
    subscriber.connect()
    assert subscriber.subscribe("data/+", 1) == [1]
    publisher = Client(broker, V5, "app-writer")
    publisher.connect()
    for i in range(5):
        publisher.publish("data/x", f"m{i}", qos=1)
    subscriber.wait_messages(5)

    server = latest(monitor, "Server",
                    lambda f: f["MsgRead"] >= 5 and f["MsgWrite"] >= 5)
    assert server["ObjectType"] == "Server"
    assert server["NodeName"] == socket.gethostname()
    assert server["Version"] and server["ActiveConnections"] == 3, server
    # Written: the five to app-reader, and the statistics the monitor has had so far.
    assert server["MsgRead"] == 5 and server["MsgWrite"] >= 5, server
    assert server["Subscriptions"] == 2 and server["TotalEndpoints"] == 1, server
    endpoint = latest(monitor, "Endpoint", lambda f: f["ReadMsgs"] >= 5)
    assert endpoint["Name"] == "DemoEndpoint" and endpoint["Port"] == broker.port, endpoint
    assert endpoint["Active"] == 3 and endpoint["ReadMsgs"] == 5, endpoint
    memory = latest(monitor, "Memory")
    assert 0 < memory["ServerResidentSetBytes"] < memory["MemoryTotalBytes"], memory

    latest(monitor, "Server", lambda f: len(figures(monitor, "Server")) >= 3, timeout=10)
    times = [datetime.fromisoformat(f["TimeStamp"].replace("Z", "+00:00"))
             for f in figures(monitor, "Server")]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert all(1.5 <= gap <= 4 for gap in gaps), gaps
    with monitor.lock:
        assert {m.qos for m in monitor.messages} == {0}
    for c in (monitor, subscriber, publisher):
        c.disconnect()


@pytest.mark.parametrize("proto", [V5, V311])
def test_who_may_subscribe(broker, proto):
    """Proves Amlen's consumer rules: a persistent session is refused (its queue would hold
    stale figures), a client no policy grants them is refused, and `#` reaches no `$SYS`
    topic, while a granted clean session gets them."""
    if proto == V5:
        lasting = Client(broker, V5, "monitor-lasting", clean=False, session_expiry=600)
    else:
        lasting = Client(broker, V311, "monitor-lasting", clean=False)
    lasting.connect()
    assert lasting.subscribe(ROOT + "Server", 0) == [PERSISTENT_REFUSED[proto]]
    stranger = Client(broker, proto, "app-curious")
    stranger.connect()
    assert stranger.subscribe(ROOT + "Memory", 0) == [NOT_AUTHORIZED[proto]]
    everything = Client(broker, proto, "monitor-everything")
    everything.connect()
    assert everything.subscribe("#", 0) == [0]
    granted = Client(broker, proto, "monitor-granted")
    granted.connect()
    assert granted.subscribe(ROOT + "Memory", 0) == [0]
    latest(granted, "Memory")
    assert holds_for(lambda: not everything.messages, 3)
    for c in (lasting, stranger, everything, granted):
        c.disconnect()
