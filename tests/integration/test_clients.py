"""Real-client smoke tests: mosquitto_pub / mosquitto_sub across protocol versions, and MQTT 3.1
(`MQIsdp`, protocol level 3) clients."""

import shutil

import paho.mqtt.client as mqtt
import pytest

import mqtt_raw as m
from helpers import V5, V311, Client, mosquitto_pub, mosquitto_sub

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto_sub"),
                                reason="mosquitto clients not installed")


@pytest.mark.parametrize("pub_version", ["5", "311"])
@pytest.mark.parametrize("sub_version", ["5", "311"])
def test_mosquitto_pub_sub_all_qos(broker, procs, sub_version, pub_version):
    """`mosquitto_sub -V <v> -q 2` receives what `mosquitto_pub -V <v>` publishes at QoS 0, 1
    and 2, each at the publish QoS (subscription QoS 2 is the maximum), then exits by itself
    after the 3 messages (-C 3) with status 0."""
    out = mosquitto_sub(procs, broker, "cli/t", f"sub-{sub_version}", sub_version, count=3,
                        qos=2)
    for qos in (0, 1, 2):
        done = mosquitto_pub(broker, "cli/t", f"hello-{qos}", f"pub-{pub_version}-{qos}",
                             pub_version, qos)
        assert done.returncode == 0, done.stderr
    assert out.finish() == 0
    assert [x for x in out.lines if x.startswith("MSG")] == \
        ["MSG 0 cli/t hello-0", "MSG 1 cli/t hello-1", "MSG 2 cli/t hello-2"]


def test_mqtt31_connect_bytes(broker, raw):
    """A CONNECT with protocol name `MQIsdp` and level 3 (MQTT 3.1) is accepted: CONNACK
    `20 02 00 00`."""
    r = raw(3)
    r.send(m.connect("v31-client", version=3))
    assert r.expect(m.CONNACK).raw == b"\x20\x02\x00\x00"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqtt31_paho_publish_and_subscribe(broker, qos):
    """paho with MQTTv31 subscribes and publishes; its own message comes back at the QoS."""
    c = Client(broker, mqtt.MQTTv31, "paho31")
    try:
        c.connect()
        assert c.subscribe("v31/t", qos) == [qos]
        c.publish("v31/t", b"old school", qos)
        [msg] = c.wait_messages(1)
        assert (msg.payload, msg.qos) == (b"old school", qos)
    finally:
        c.close()


def test_mqtt31_interoperates_with_v5_and_v311(broker, procs, client):
    """MQTT 3.1 and newer clients share topics: `mosquitto_pub -V mqttv31` reaches a paho v5
    and a paho v3.1.1 subscriber, and `mosquitto_sub -V mqttv31` receives a paho v5 publish."""
    subs = [client(proto, f"sub{proto}") for proto in (V5, V311)]
    for s in subs:
        s.subscribe("mix/t", 1)
    done = mosquitto_pub(broker, "mix/t", "from 3.1", "pub-mqttv31-1", "mqttv31", 1)
    assert done.returncode == 0, done.stderr
    for s in subs:
        assert s.wait_messages(1)[0].payload == b"from 3.1"
    out = mosquitto_sub(procs, broker, "mix/back", "sub-mqttv31", "mqttv31", count=1, qos=1)
    client(V5, "pub5").publish("mix/back", b"from 5", 1)
    out.wait(lambda x: x == "MSG 1 mix/back from 5", what="message")
    assert out.finish() == 0
