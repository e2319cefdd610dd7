"""The ironsight binary as an operator meets it: no arguments, a bad configuration, SIGTERM,
core selection, and connections that go idle (parked) and come back."""

from __future__ import annotations

import json
import os
import socket
import signal
import subprocess
import time

import pytest

import mqtt_raw as m
from broker import IRONSIGHT_BIN, free_port, port_open
from helpers import V5, V311, Client, healthy, wait_for

pytestmark = pytest.mark.ironsight_only(reason="the ironsight binary's own command line and lifecycle")

DEMO_PORT = 1883


def run(args, timeout=10, cwd=None, env=None):
    return subprocess.run([IRONSIGHT_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=subprocess.DEVNULL,
                          env=None if env is None else {**os.environ, **env})


class Started:
    """An ironsight process started by the test itself, stopped at the end."""

    def __init__(self, args, port, tmp_path):
        self.port = port
        self.log = open(tmp_path / "ironsight.log", "w+")
        self.proc = subprocess.Popen([IRONSIGHT_BIN, *args], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=tmp_path)
        assert wait_for(lambda: port_open("127.0.0.1", port) or self.proc.poll() is not None, 10)
        assert self.proc.poll() is None, f"ironsight exited at start:\n{self.text()}"
        # The port is bound before the shards run; "ready" says they all accept.
        assert wait_for(lambda: "ready" in self.text(), 10), self.text()
        self.host = "127.0.0.1"

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def exchange_all_qos(host, port, proto):
    """A subscriber at QoS 2 and a publisher exchange one message at each QoS."""
    target = type("Target", (), {"host": host, "port": port})()
    sub, pub = Client(target, proto, "demo-sub"), Client(target, proto, "demo-pub")
    try:
        sub.connect()
        pub.connect()
        sub.subscribe("demo/#", 2)
        for qos in (0, 1, 2):
            pub.publish(f"demo/{qos}", f"qos {qos}".encode(), qos)
        msgs = sub.wait_messages(3)
        assert sorted((msg.topic, msg.payload, msg.qos) for msg in msgs) == \
            [("demo/0", b"qos 0", 0), ("demo/1", b"qos 1", 1), ("demo/2", b"qos 2", 2)]
    finally:
        sub.close()
        pub.close()


def test_no_arguments_runs_the_demo_endpoint_on_1883(tmp_path):
    """`ironsight` with no arguments listens on port 1883 on every interface, IPv6 and IPv4
    alike (`Interface: All` is one dual-stack socket on `[::]`), and accepts anonymous MQTT
    3.1.1 and 5 clients, like MessageSight's DemoEndpoint."""
    assert not port_open("127.0.0.1", DEMO_PORT), "port 1883 is taken: stop the other broker"
    server = Started([], DEMO_PORT, tmp_path)
    try:
        for proto in (V311, V5):
            exchange_all_qos("127.0.0.1", DEMO_PORT, proto)
        if socket.has_ipv6 and port_open("::1", DEMO_PORT):
            over_ipv6 = m.RawClient("::1", DEMO_PORT, 5)
            try:
                assert over_ipv6.connect("over-ipv6").reason == 0
            finally:
                over_ipv6.close()
        assert "[::]:1883" in server.text()
    finally:
        server.stop()


def test_bad_configuration_is_refused_naming_object_and_attribute(tmp_path):
    """A configuration with an out-of-range Port: exit status 2 and a message naming the
    object type, the object and the attribute; nothing listens."""
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({
        "MessageHub": {"Hub": {}},
        "Endpoint": {"Edge": {"Port": 70000, "MessageHub": "Hub", "ConnectionPolicies": "CP",
                              "TopicPolicies": "TP"}},
        "ConnectionPolicy": {"CP": {"ClientID": "*"}},
        "TopicPolicy": {"TP": {"Topic": "*", "ActionList": "Publish,Subscribe"}},
    }))
    done = run(["--config", str(config)])
    assert done.returncode == 2
    assert 'Endpoint "Edge", attribute Port: must be an integer from 1 to 65535' in done.stderr


def test_check_config_prints_every_default(tmp_path):
    """`--check-config` prints the configuration with MessageSight's defaults filled in (sizes
    written as MessageSight writes them) and exits 0 without listening."""
    config = tmp_path / "min.json"
    config.write_text(json.dumps({
        "MessageHub": {"Hub": {}},
        "Endpoint": {"Edge": {"Port": free_port(), "MessageHub": "Hub", "ConnectionPolicies": "CP",
                              "TopicPolicies": "TP"}},
        "ConnectionPolicy": {"CP": {"ClientID": "*"}},
        "TopicPolicy": {"TP": {"Topic": "*", "ActionList": "Publish"}},
    }))
    done = run(["--config", str(config), "--check-config"])
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["Endpoint"]["Edge"]["MaxMessageSize"] == "4MB"
    assert shown["TopicPolicy"]["TP"]["MaxMessages"] == 5000
    assert shown["TopicPolicy"]["TP"]["MaxMessagesBehavior"] == "RejectNewMessages"
    assert shown["Broker"]["MaxInflightMessages"] == 128
    assert shown["Store"] == {"EnableDiskPersistence": False,
                              "DiskPersistPath": "/var/lib/ironsight/store",
                              "PersistFileSizeMB": 64}
    assert "no durable store" in done.stderr


def test_check_config_reports_the_store(tmp_path):
    """With the store on, `--check-config` says where it lives (a relative path is the
    configuration file's directory) and how large its journal segments are."""
    config = tmp_path / "durable.json"
    config.write_text(json.dumps({
        "MessageHub": {"Hub": {}},
        "Endpoint": {"Edge": {"Port": free_port(), "MessageHub": "Hub", "ConnectionPolicies": "CP",
                              "TopicPolicies": "TP"}},
        "ConnectionPolicy": {"CP": {"ClientID": "*"}},
        "TopicPolicy": {"TP": {"Topic": "*", "ActionList": "Publish"}},
        "Store": {"EnableDiskPersistence": True, "DiskPersistPath": "data",
                  "PersistFileSizeMB": 8},
    }))
    done = run(["--config", str(config), "--check-config"])
    assert done.returncode == 0, done.stderr
    assert f"durable store in {tmp_path / 'data'}, journal segments of 8 MiB" in done.stderr


@pytest.mark.parametrize("cores", ["1", "0-1"])
def test_cores_option_selects_shards(tmp_path, cores):
    """`--cores 1` (one shard) and `--cores 0-1` (a CPU list) both serve clients; a client id
    that hashes to another shard than the one that accepted it is moved there transparently."""
    port = free_port()
    server = Started(["--listen", f"127.0.0.1:{port}", "--cores", cores], port, tmp_path)
    try:
        assert "shards=" in server.text()
        for proto in (V311, V5):
            exchange_all_qos("127.0.0.1", port, proto)
    finally:
        server.stop()


def test_cores_option_refuses_unavailable_cpus():
    """A CPU the process may not use is refused before anything starts."""
    done = run(["--cores", "0,100000", "--listen", f"127.0.0.1:{free_port()}"])
    assert done.returncode == 2
    assert "CPU 100000 is not available" in done.stderr


def test_cores_from_the_environment():
    """IRONSIGHT_CORES (the appliance's CPU layout, passed in by ironsight.service) is read as
    --cores: a CPU list naming an unavailable CPU is refused from there too, and the option,
    where given, wins over the environment (this one would be refused)."""
    bad = {"IRONSIGHT_CORES": "0,100000"}
    done = run(["--listen", f"127.0.0.1:{free_port()}"], env=bad)
    assert done.returncode == 2
    assert "CPU 100000 is not available" in done.stderr
    port = free_port()
    proc = subprocess.Popen([IRONSIGHT_BIN, "--listen", f"127.0.0.1:{port}", "--cores", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env={**os.environ, **bad})
    try:
        assert wait_for(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, 10)
        assert proc.poll() is None, "--cores 1 should override IRONSIGHT_CORES"
    finally:
        proc.terminate()
        proc.wait(10)


def test_sigterm_tells_v5_clients_and_exits(broker, raw):
    """SIGTERM: a v5 client receives DISCONNECT 0x8B (Server shutting down) then the close, a
    v3.1.1 client the close, the process exits with status 0 in a few seconds, and the will of
    a connected client is not published (sessions end with the process)."""
    v5 = raw(V5)
    v5.connect("stays-v5")
    v3 = raw(V311)
    v3.connect("stays-v3", will={"topic": "will/topic", "payload": b"bye"})
    watcher = raw(V311)
    watcher.connect("watcher")
    watcher.subscribe("will/#")
    broker.stopped_by_us = True
    broker.proc.send_signal(signal.SIGTERM)
    assert [(p.type, p.reason) for p in v5.recv_until_closed()] == [(m.DISCONNECT, 0x8B)]
    assert v3.recv_until_closed() == []
    assert watcher.recv_until_closed() == [], "no will on a broker shutdown"
    assert broker.proc.wait(5) == 0


def test_idle_connections_are_parked_and_still_served(start_broker):
    """A connection without input for PARK_AFTER_S (2 s) gives up its task and waits in epoll
    (docs/design.md). Parked, it must still receive messages (written straight to its socket)
    and be woken by its own input. The debug log proves each step, per connection (one shard,
    so connection numbers are unique): both clients park; the subscriber (QoS 0, so it sends
    no PUBACK) gets a message and stays parked (a wake-up would park it again at the next
    tick, its last packet being old), while the publisher, woken by its PUBLISH, parks again;
    then the subscriber's own PUBLISH wakes it, and it parks once more."""
    b = start_broker(env={"IRONSIGHT_LOG": "debug"}, args=["--cores", "1"])
    sub, pub = Client(b, V5, "parked-sub"), Client(b, V311, "parked-pub")

    def conn_of(client_id):
        [match] = b.log_lines(rf"connected conn=(\d+) .* client_id={client_id} ")
        return match.group(1)

    def parks(conn):
        return len(b.log_lines(rf"DEBUG .* parked conn={conn}$"))

    def wait_parks(conn, count):
        wait_for(lambda: parks(conn) >= count, 10, message=f"conn {conn} parked {count} times")
        assert parks(conn) == count

    try:
        sub.connect()
        pub.connect()
        sub.subscribe("park/in", 0)
        pub.subscribe("park/out", 1)
        s, p = conn_of("parked-sub"), conn_of("parked-pub")
        wait_parks(s, 1)
        wait_parks(p, 1)
        pub.publish("park/in", b"to a parked subscriber", 1)
        assert sub.wait_messages(1)[0].payload == b"to a parked subscriber"
        wait_parks(p, 2)
        assert parks(s) == 1, "receiving did not wake the subscriber"
        assert sub.publish("park/out", b"from a parked publisher", 1) == 0
        assert pub.wait_messages(1)[0].payload == b"from a parked publisher"
        wait_parks(s, 2)
        healthy(b, V5)
    finally:
        sub.close()
        pub.close()
