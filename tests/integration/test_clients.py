"""Real-client smoke tests: mosquitto_pub / mosquitto_sub across protocol versions, and MQTT 3.1
(`MQIsdp`, protocol level 3) clients."""

import shutil
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

import mqtt_raw as m
from helpers import V5, V311, Client, wait_for

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto_sub"),
                                reason="mosquitto clients not installed")


class Lines:
    """Collects a subprocess's stdout lines on a thread, so tests can wait for one."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def finish(self, timeout=10) -> int:
        """Wait for the process to exit by itself and for its last line; return its status."""
        status = self.proc.wait(timeout)
        self.reader.join(timeout)
        return status

    def wait(self, predicate, timeout=5, what="line"):
        return wait_for(lambda: [x for x in self.lines if predicate(x)], timeout,
                        message=lambda: f"{what} from mosquitto_sub; got {self.lines}")


def mosquitto_sub(procs, broker, version, topic, count, qos=2):
    """Start mosquitto_sub (-d so it reports its SUBACK) that exits after `count` messages,
    each printed as `MSG <qos> <topic> <payload>`; return once it is subscribed. stdbuf makes
    its stdout line-buffered, or the debug lines would sit in a pipe buffer."""
    proc = procs(["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version,
                  "-q", str(qos), "-t", topic, "-C", str(count), "-W", "20", "-d",
                  "-i", f"sub-{version}", "-F", "MSG %q %t %p"])
    out = Lines(proc)
    out.wait(lambda x: "received SUBACK" in x, what="SUBACK")
    return proc, out


def mosquitto_pub(broker, version, topic, payload, qos):
    done = subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port),
                           "-V", version, "-q", str(qos), "-t", topic, "-m", payload,
                           "-i", f"pub-{version}-{qos}"],
                          capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("pub_version", ["5", "311"])
@pytest.mark.parametrize("sub_version", ["5", "311"])
def test_mosquitto_pub_sub_all_qos(broker, procs, sub_version, pub_version):
    """`mosquitto_sub -V <v> -q 2` receives what `mosquitto_pub -V <v>` publishes at QoS 0, 1
    and 2, each at the publish QoS (subscription QoS 2 is the maximum), then exits by itself
    after the 3 messages (-C 3) with status 0."""
    _, out = mosquitto_sub(procs, broker, sub_version, "cli/t", 3)
    for qos in (0, 1, 2):
        mosquitto_pub(broker, pub_version, "cli/t", f"hello-{qos}", qos)
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
    mosquitto_pub(broker, "mqttv31", "mix/t", "from 3.1", 1)
    for s in subs:
        assert s.wait_messages(1)[0].payload == b"from 3.1"
    _, out = mosquitto_sub(procs, broker, "mqttv31", "mix/back", 1, qos=1)
    client(V5, "pub5").publish("mix/back", b"from 5", 1)
    out.wait(lambda x: x == "MSG 1 mix/back from 5", what="message")
    assert out.finish() == 0
