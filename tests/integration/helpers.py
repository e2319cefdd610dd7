"""Shared helpers: bounded waiting, a recording paho-mqtt client, and small utilities."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5   # protocol levels 4 and 5
PROTO_IDS = {mqtt.MQTTv31: "v31", V311: "v311", V5: "v5"}


def wait_for(predicate: Callable[[], Any], timeout: float = 5, interval: float = 0.01,
             message: str | Callable[[], str] = "condition") -> Any:
    """Poll `predicate` until it returns something truthy and return that, or fail the test
    after `timeout` seconds. This is how tests wait: never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {text}")
        time.sleep(interval)


def holds_for(predicate: Callable[[], Any], seconds: float, interval: float = 0.02) -> bool:
    """True if `predicate` stays truthy for `seconds`. Proving that something does NOT happen
    needs a bounded observation window; keep `seconds` small."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


def fd_targets(pid: int) -> set[str]:
    """What the open file descriptors of process `pid` point to (`socket:[123]`, paths). The
    process opens and closes descriptors while this runs, so an entry listed and gone before
    it is read is skipped, not an error."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.add(os.readlink(fd))
        except FileNotFoundError:
            pass
    return targets


def _proc_net_tcp_address(addr: tuple[str, int]) -> str:
    """An IPv4 (host, port) as /proc/net/tcp writes it: '0100007F:075B' for 127.0.0.1:1883."""
    host, port = addr[0], addr[1]
    # The kernel prints the address as a native-endian u32 of the network-order bytes.
    return f"{struct.unpack('=I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def wait_peer_closed(local: tuple, remote: tuple, timeout: float = 5) -> bool:
    """After this side closed a loopback TCP connection, wait until the peer has closed its side
    too: the kernel's entry for the connection reaches TIME_WAIT (the peer's FIN arrived) or is
    gone (reset). Returns False if that does not happen within `timeout`. Linux only."""
    want = (_proc_net_tcp_address(local), _proc_net_tcp_address(remote))
    TIME_WAIT, CLOSE = "06", "07"

    def peer_closed() -> bool:
        with open("/proc/net/tcp") as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if (fields[1], fields[2]) == want:
                    return fields[3] in (TIME_WAIT, CLOSE)
        return True

    try:
        wait_for(peer_closed, timeout, message="the broker to close the connection")
        return True
    except AssertionError:
        return False


def read_until_closed(sock: socket.socket, timeout: float = 5) -> bytes:
    """Everything the peer sends until it closes (EOF or reset); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the connection stayed open for {timeout}s; got {bytes(got)!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, ConnectionAbortedError):
            return bytes(got)
        if not chunk:
            return bytes(got)
        got += chunk


def props(packet_type: int, **values) -> Properties:
    """paho Properties from keyword arguments, e.g.
    props(PacketTypes.PUBLISH, MessageExpiryInterval=2, UserProperty=[("a", "1")])."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


@dataclass
class ConnAck:
    reason: int
    session_present: bool
    props: Any


class Client:
    """A paho-mqtt 2.x client (CallbackAPIVersion.VERSION2) on its own network thread that
    records everything it receives. Every blocking call waits with a bound.

    `clean` is clean_session for 3.1.x and clean_start for 5.0. Reconnect-on-failure is off, so
    a dropped connection stays dropped and tests see exactly what the broker did.

    `transport` is paho's: "tcp" or "websockets"; `tls` an ssl.SSLContext to wrap the
    connection in (MQTT over TLS, or WebSocket over TLS); `bind_address` the local address to
    connect from (another loopback address, such as 127.0.0.2, for address policies)."""

    def __init__(self, broker, proto: int, client_id: str = "", clean: bool = True,
                 keepalive: int = 60, session_expiry: int | None = None,
                 connect_props: dict | None = None, will: dict | None = None,
                 userdata: Any = None, transport: str = "tcp",
                 tls: ssl.SSLContext | None = None, bind_address: str = ""):
        self.transport, self.tls = transport, tls
        self.bind_address = bind_address
        self.broker, self.proto, self.client_id = broker, proto, client_id
        self.clean, self.keepalive = clean, keepalive
        self.session_expiry, self.connect_props = session_expiry, connect_props or {}
        self.will, self.userdata = will, userdata
        self.lock = threading.Lock()
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack: ConnAck | None = None
        self.disconnected = threading.Event()
        self.disconnect_reason: int | None = None
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.mqtt = self._new_paho()

    def _new_paho(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=self.proto, userdata=self.userdata,
                             clean_session=None if self.proto == V5 else self.clean,
                             reconnect_on_failure=False, transport=self.transport)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        if self.will:
            client.will_set(self.will["topic"], self.will.get("payload", b""),
                            self.will.get("qos", 0), self.will.get("retain", False),
                            self.will.get("props"))
        return client

    # -- callbacks (network thread) -------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = ConnAck(reason_code.value, flags.session_present, properties)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append(message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code.value
        self.disconnected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subacks[mid] = [rc.value for rc in reason_codes]

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.pubacks[mid] = reason_code.value

    # -- operations -----------------------------------------------------------------------------
    def connect(self, expect_reason: int | None = 0, timeout: float = 5) -> ConnAck:
        """Connect and wait for the CONNACK; assert its reason unless expect_reason is None."""
        properties = None
        if self.proto == V5:
            values = dict(self.connect_props)
            if self.session_expiry is not None:
                values["SessionExpiryInterval"] = self.session_expiry
            properties = props(PacketTypes.CONNECT, **values) if values else None
        self.connack = None
        self.disconnected.clear()
        kwargs = {"clean_start": self.clean} if self.proto == V5 else {}
        self.mqtt.connect(self.broker.host, self.broker.port, self.keepalive,
                          bind_address=self.bind_address, properties=properties, **kwargs)
        self.mqtt.loop_start()
        wait_for(lambda: self.connack or self.disconnected.is_set(), timeout,
                 message=f"CONNACK for {self.client_id!r}")
        assert self.connack is not None, f"{self.client_id!r}: closed before CONNACK"
        if expect_reason is not None:
            assert self.connack.reason == expect_reason, self.connack
        return self.connack

    def subscribe(self, topic: str, qos: int = 0, no_local: bool = False,
                  retain_as_published: bool = False, retain_handling: int = 0,
                  sub_id: int | None = None, timeout: float = 5) -> list[int]:
        """Subscribe and wait for the SUBACK; return its reason codes (granted QoS)."""
        if self.proto == V5:
            options = SubscribeOptions(qos=qos, noLocal=no_local,
                                       retainAsPublished=retain_as_published,
                                       retainHandling=retain_handling)
            properties = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) \
                if sub_id else None
            rc, mid = self.mqtt.subscribe(topic, options=options, properties=properties)
        else:
            rc, mid = self.mqtt.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        return wait_for(lambda: self.subacks.get(mid), timeout, message=f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0,
                retain: bool = False, properties: Properties | None = None,
                wait: bool = True, timeout: float = 5) -> int | None:
        """Publish. With wait=True, wait until it is sent (QoS 0) or acknowledged (QoS 1:
        PUBACK, QoS 2: PUBCOMP) and return the reason code of the acknowledgement."""
        info = self.mqtt.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        if not wait:
            return None
        if qos == 0:
            info.wait_for_publish(timeout)
            return None
        return wait_for(lambda: self.pubacks.get(info.mid) is not None and
                        [self.pubacks[info.mid]], timeout,
                        message=f"acknowledgement of {topic} QoS {qos}")[0]

    def publish_and_be_closed(self, topic: str, payload: bytes = b"x", qos: int = 1,
                              retain: bool = False, timeout: float = 5) -> None:
        """Publish where the broker answers by closing the connection (a v3 client refused by a
        policy cannot be told otherwise) and assert that it closes. paho may report that close
        as the publish's own result (no connection) when its network thread sees it before
        publish() returns; the close is the outcome either way."""
        assert self.mqtt.is_connected()
        info = self.mqtt.publish(topic, payload, qos, retain)
        assert info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), info.rc
        assert self.disconnected.wait(timeout), \
            f"{self.client_id!r} still connected after publishing on {topic}"

    def wait_messages(self, n: int, timeout: float = 5, topic: str | None = None) -> list:
        """Wait until at least n messages (on `topic`, if given) have arrived; return them."""
        def got():
            with self.lock:
                msgs = [m for m in self.messages if topic is None or m.topic == topic]
            return msgs if len(msgs) >= n else None
        return wait_for(got, timeout, message=lambda: f"{n} messages at {self.client_id!r} "
                        f"(have {len(self.messages)})")

    def received(self, topic: str | None = None) -> list:
        with self.lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.received(topic)]

    def disconnect(self, timeout: float = 5, check: bool = True) -> None:
        """Send DISCONNECT (reason 0x00) and wait until the broker has closed its side of the
        connection, i.e. has processed the DISCONNECT. paho closes its socket right after
        sending, so without this wait the next step of a test (a publish, a reconnect with the
        same id) could reach a broker that still sees this connection as live."""
        sock = self.tcp_socket()
        ends = (sock.getsockname(), sock.getpeername()) if sock is not None else None
        self.mqtt.disconnect()
        self.disconnected.wait(timeout)
        self.mqtt.loop_stop()
        if ends is not None:
            closed = wait_peer_closed(*ends, timeout=timeout if check else 0.5)
            assert closed or not check, "the broker did not close the connection after DISCONNECT"

    def tcp_socket(self):
        """The connection's socket (TCP or TLS), also under paho's WebSocket wrapper."""
        sock = self.mqtt.socket()
        return getattr(sock, "_socket", sock)

    def close(self) -> None:
        """Release everything; safe to call more than once (used by fixtures at teardown)."""
        try:
            if self.mqtt.is_connected():
                self.disconnect(check=False)
        finally:
            self.mqtt.loop_stop()
            sock = self.mqtt.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    def reconnect(self, clean: bool | None = None, **kw) -> ConnAck:
        """Close this connection (cleanly if still open) and connect again with the same id on a
        fresh paho client; `clean` overrides clean session / clean start. Received messages are
        kept; call clear() first to count only new ones."""
        self.close()
        if clean is not None:
            self.clean = clean
        self.subacks, self.pubacks = {}, {}
        self.mqtt = self._new_paho()
        return self.connect(**kw)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


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
        name = self.proc.args[0] if isinstance(self.proc.args, list) else self.proc.args
        return wait_for(lambda: [x for x in self.lines if predicate(x)], timeout,
                        message=lambda: f"{what} from {name}; got {self.lines}")


def mosquitto_sub(procs, broker, topic: str, client_id: str, version: str = "5",
                  count: int = 1, qos: int = 1, extra: list[str] | tuple = ()) -> Lines:
    """Start mosquitto_sub (-d, so that it reports its SUBACK) that exits after `count`
    messages, each printed as `MSG <qos> <topic> <payload>`; return its lines once it is
    subscribed. `extra`: more options (TLS ones, say). stdbuf makes its stdout line-buffered,
    or the debug lines would sit in a pipe buffer."""
    proc = procs(["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
                  "-V", version, "-q", str(qos), "-t", topic, "-C", str(count), "-W", "15",
                  "-d", "-i", client_id, "-F", "MSG %q %t %p", *extra])
    out = Lines(proc)
    out.wait(lambda x: "received SUBACK" in x, what="SUBACK")
    return out


def mosquitto_pub(broker, topic: str, payload: str, client_id: str, version: str = "5",
                  qos: int = 1, extra: list[str] | tuple = ()) -> subprocess.CompletedProcess:
    """Run mosquitto_pub once; return what it did (returncode, stderr)."""
    return subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port),
                           "-V", version, "-q", str(qos), "-t", topic, "-m", payload,
                           "-i", client_id, *extra], capture_output=True, text=True, timeout=10)


NODE_DIR = Path(__file__).resolve().parent / "node"


def mqttjs_missing() -> str | None:
    """Why MQTT.js cannot run here, or None. tests/run installs it (npm ci)."""
    if not shutil.which("node"):
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "mqtt").is_dir():
        return "MQTT.js is not installed: npm ci --prefix tests/integration/node"
    return None


def mqttjs(procs, url: str, client_id: str, version: int, topic: str,
           ca: str | None = None, publish: str | None = None, count: int = 1) -> Lines:
    """Start node/mqttjs.js (MQTT.js) against `url` (ws:// or wss://): it subscribes to `topic`
    at QoS 1, publishes `publish` there if given, and exits 0 after `count` messages. Its
    stdout is one JSON object a line; returns them as Lines once it has subscribed."""
    argv = ["node", str(NODE_DIR / "mqttjs.js"), url, "--id", client_id,
            "--version", str(version), "--topic", topic, "--count", str(count),
            "--timeout-ms", "15000"]
    if ca:
        argv += ["--ca", ca]
    if publish is not None:
        argv += ["--publish", publish]
    out = Lines(procs(argv))
    out.wait(lambda x: '"event":"subscribed"' in x or '"event":"error"' in x, timeout=10,
             what="subscribed")
    assert not [x for x in out.lines if '"event":"error"' in x], out.lines
    return out


def healthy(broker, proto: int = V311, **client_kw) -> None:
    """Assert that the broker still serves a new client end to end: connect, subscribe,
    publish at QoS 1, receive it. Used after every hostile-input test. `client_kw` goes to
    Client (e.g. tls=... for an endpoint that takes only TLS)."""
    c = Client(broker, proto, f"healthcheck-{proto}", **client_kw)
    try:
        c.connect()
        c.subscribe("health/check", 1)
        assert c.publish("health/check", b"ok", 1) in (0, 16)
        msgs = c.wait_messages(1, topic="health/check")
        assert msgs[0].payload == b"ok"
    finally:
        c.close()
