"""The REST admin API (`ironsight_admin`) against the real binary: a fresh install refusing
everything until `--set-admin-password`, every route good and bad, refusals in Amlen's shape
that change nothing (the configuration read again and the file on disk compared byte for byte),
ConfigurationPolicies, monitoring that matches real paho clients, close connection and session
deletion seen by those clients, /metrics read with the official Prometheus parser, restart and
stop, and the endpoint over HTTPS.

Every broker here has an AdminEndpoint on a free loopback port; HTTP is urllib's.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker import IRONSIGHT_BIN, free_port
from helpers import V5, V311, Client, wait_for
from tls_setup import PROFILE, tls_objects

pytestmark = pytest.mark.ironsight_only(reason="ironsight's REST admin API")

PASSWORD = "s3cret-admin"
# Each HTTP request waits at most this long.
HTTP_TIMEOUT_S = 10


class Admin:
    """A broker with an AdminEndpoint, and an HTTP client for it."""

    def __init__(self, broker, port: int, scheme: str = "http",
                 context: ssl.SSLContext | None = None):
        self.broker, self.port, self.context = broker, port, context
        self.url = f"{scheme}://{'localhost' if context else '127.0.0.1'}:{port}"
        self.clients: list[Client] = []

    def request(self, method: str, path: str, body=None, user: str | None = "admin",
                password: str = PASSWORD, raw: bytes | None = None,
                auth_header: str | None = None) -> tuple[int, object, dict]:
        """(status, body as JSON or text, headers by lower-case name)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if auth_header is not None:
            req.add_header("Authorization", auth_header)
        elif user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S,
                                        context=self.context) as resp:
                status, headers, payload = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            status, headers, payload = e.code, dict(e.headers), e.read()
        headers = {k.lower(): v for k, v in headers.items()}
        text = payload.decode()
        try:
            return status, json.loads(text), headers
        except ValueError:
            return status, text, headers

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def ok(self, method: str, path: str, body=None) -> dict:
        status, answer, _ = self.request(method, path, body)
        assert status == 200, (status, answer)
        return answer

    def configuration(self) -> dict:
        return self.ok("GET", "/ima/v1/configuration")

    def file_bytes(self) -> bytes:
        return self.broker.config_path.read_bytes()

    def monitor(self, obj: str, query: str = "") -> dict:
        return self.ok("GET", f"/ima/v1/monitor/{obj}{'?' + query if query else ''}")

    def client(self, proto: int, client_id: str, **kw) -> Client:
        c = Client(self.broker, proto, client_id, **kw)
        self.clients.append(c)
        c.connect()
        return c

    def close(self):
        for c in self.clients:
            c.close()


def set_password(config_path: Path, password: str = PASSWORD, user: str | None = None) -> str:
    """`ironsight --set-admin-password`, the password on standard input; returns stderr."""
    args = [IRONSIGHT_BIN, "--config", str(config_path), "--set-admin-password"]
    if user:
        args += ["--admin-user", user]
    done = subprocess.run(args, input=password + "\n", capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stderr


def start(start_broker, admin_endpoint: dict | None = None, objects: dict | None = None,
          password: bool = True, **kw) -> Admin:
    port = free_port()
    b = start_broker(objects={"AdminEndpoint": {"Port": port, **(admin_endpoint or {})},
                              **(objects or {})}, **kw)
    b.wait_log("admin endpoint listening")
    if password:
        set_password(b.config_path)
    return Admin(b, port)


@pytest.fixture
def admin(start_broker):
    a = start(start_broker)
    yield a
    a.close()


def refused(admin: Admin, status: int, code: str, answer, *fragments: str) -> None:
    """The answer is Amlen's error shape with this code, naming every fragment."""
    assert isinstance(answer, dict), answer
    assert answer.get("Version") == "v1" and answer.get("Code") == code, answer
    for fragment in fragments:
        assert fragment in answer["Message"], (fragment, answer)


# --------------------------------------------------------------------------------------------


def test_fresh_install_refuses_until_the_password_is_set(start_broker):
    """Proves a fresh install prints how to set the admin password, refuses every request with
    401 saying how, and takes the password set with --set-admin-password (read from standard
    input, kept only as a verifier) without a restart; wrong, missing and non-basic
    credentials stay refused."""
    a = start(start_broker, password=False)
    a.broker.wait_log(r"--set-admin-password")
    status, answer, headers = a.get("/ima/v1/service/status")
    assert status == 401
    refused(a, 401, "CWLNA8003", answer, "no administrator password is set",
            f"ironsight --config {a.broker.config_path} --set-admin-password")
    assert headers.get("www-authenticate", "").startswith("Basic")
    message = set_password(a.broker.config_path)
    assert "password is set" in message
    stored = json.loads(a.file_bytes())
    assert stored["AdminUserPassword"].startswith("SCRAM-SHA-256$")
    assert PASSWORD not in a.file_bytes().decode()
    status, answer, _ = a.get("/ima/v1/service/status")
    assert status == 200, answer
    server = answer["Server"]
    assert server["Status"] == "Running" and server["Version"].startswith("ironsight ")
    assert server["UpTimeSeconds"] >= 0 and "ServerTime" in server
    for kw in ({"password": "wrong"}, {"user": "root"}, {"user": None},
               {"auth_header": "Bearer abc"}):
        status, answer, _ = a.get("/ima/v1/service/status", **kw)
        assert status == 401, (kw, answer)
        refused(a, 401, "CWLNA8003", answer)
    status, answer, _ = a.get("/ima/v1/service/status/Cluster")
    refused(a, 404, "CWLNA0136", answer, "Server")


def test_configuration_is_read_with_defaults_and_without_secrets(admin):
    """Proves GET shows the running configuration as the file's objects with defaults filled
    in, by type and by name, without the password hash; unknown types and names are 404."""
    everything = admin.configuration()
    assert everything["Version"] == "v1"
    endpoint = everything["Endpoint"]["DemoEndpoint"]
    assert endpoint["MaxConnectMessageSize"] == "64KB", "a default filled in"
    assert everything["AdminEndpoint"]["Port"] == admin.port
    assert everything["AdminUserID"] == "admin"
    assert "AdminUserPassword" not in everything
    assert "SCRAM" not in json.dumps(everything)
    by_type = admin.ok("GET", "/ima/v1/configuration/TopicPolicy")
    assert set(by_type) == {"Version", "TopicPolicy"}
    assert by_type["TopicPolicy"]["DemoTopicPolicy"]["ActionList"] == "Publish,Subscribe"
    one = admin.ok("GET", "/ima/v1/configuration/Endpoint/DemoEndpoint")
    assert one["Endpoint"] == {"DemoEndpoint": endpoint}
    assert admin.ok("GET", "/ima/v1/configuration/Broker")["Broker"]["MaxInflightMessages"] == 128
    for path, fragment in [("/ima/v1/configuration/Endpont", "Endpont"),
                           ("/ima/v1/configuration/Endpoint/Nope", "Name: Nope"),
                           ("/ima/v1/configuration/LDAP", "LDAP")]:
        status, answer, _ = admin.get(path)
        assert status == 404
        refused(admin, 404, "CWLNA0136", answer, fragment)


def test_changes_are_checked_written_and_deleted(admin):
    """Proves POST creates and updates objects (attributes not given keep their values), the
    file on disk holds the change, the answer says what took effect in the running broker
    (policies apply live), and DELETE removes an object from the running configuration and
    the file."""
    answer = admin.ok("POST", "/ima/v1/configuration", {
        "TopicPolicy": {
            "Sensors": {"Topic": "sensors/*", "ClientID": "s-*", "ActionList": "Publish"},
            "DemoTopicPolicy": {"MaxMessages": 77}},
    })
    assert answer["Applied"][:2] == ['TopicPolicy "DemoTopicPolicy": updated (MaxMessages)',
                                     'TopicPolicy "Sensors": created'], answer
    assert re.match(r"2 of 2 shards applied it", answer["Applied"][2]), answer
    assert answer["RestartNeeded"] == [], answer
    policies = admin.configuration()["TopicPolicy"]
    assert policies["Sensors"]["Topic"] == "sensors/*"
    assert policies["DemoTopicPolicy"]["MaxMessages"] == 77
    assert policies["DemoTopicPolicy"]["ActionList"] == "Publish,Subscribe", "kept"
    on_disk = json.loads(admin.file_bytes())
    assert on_disk["TopicPolicy"]["Sensors"]["ActionList"] == "Publish"
    assert on_disk["TopicPolicy"]["DemoTopicPolicy"]["MaxMessages"] == 77
    assert not list(admin.broker.config_path.parent.glob(".*.tmp")), "no temporary file left"
    answer = admin.ok("DELETE", "/ima/v1/configuration/TopicPolicy/Sensors")
    assert answer["Applied"][0] == 'TopicPolicy "Sensors": deleted', answer
    assert answer["RestartNeeded"] == [], answer
    assert "Sensors" not in admin.configuration()["TopicPolicy"]
    assert "Sensors" not in json.loads(admin.file_bytes())["TopicPolicy"]
    same = admin.ok("POST", "/ima/v1/configuration",
                    {"TopicPolicy": {"DemoTopicPolicy": {"MaxMessages": 77}}})
    assert same["RestartNeeded"] == [] and "Nothing changed" in same["Message"]


BAD_CHANGES = [
    # (method, path, body or raw bytes, status, code, fragments of the message)
    ("POST", "/ima/v1/configuration", {"Endpont": {"E": {}}}, 404, "CWLNA0136",
     ['unknown object type "Endpont"']),
    ("POST", "/ima/v1/configuration", {"Endpoint": {"DemoEndpoint": {"Prt": 1}}}, 400,
     "CWLNA0138", ['Endpoint "DemoEndpoint"', "attribute Prt", "is not an attribute"]),
    ("POST", "/ima/v1/configuration", {"Endpoint": {"DemoEndpoint": {"MaxMessageSize": True}}},
     400, "CWLNA0112", ['Endpoint "DemoEndpoint"', "attribute MaxMessageSize"]),
    ("POST", "/ima/v1/configuration",
     {"TopicPolicy": {"DemoTopicPolicy": {"MaxMessages": "many"}}}, 400, "CWLNA0112",
     ['TopicPolicy "DemoTopicPolicy"', "attribute MaxMessages", "must be an integer"]),
    ("POST", "/ima/v1/configuration",
     {"Endpoint": {"DemoEndpoint": {"TopicPolicies": "Missing"}}}, 400, "CWLNA0112",
     ["attribute TopicPolicies", 'TopicPolicy "Missing", which does not exist']),
    ("POST", "/ima/v1/configuration", {"Endpoint": {"DemoEndpoint": "port 1"}}, 400,
     "CWLNA8002", ['Endpoint "DemoEndpoint"', "must be a JSON object"]),
    ("POST", "/ima/v1/configuration", b'{"TopicPolicy": {', 400, "CWLNA8002",
     ["not valid JSON"]),
    ("POST", "/ima/v1/configuration", [1, 2], 400, "CWLNA8002", ["must be a JSON object"]),
    ("POST", "/ima/v1/configuration", {}, 400, "CWLNA8002", ["names no object"]),
    ("POST", "/ima/v1/configuration", {"AdminUserPassword": "XXXXXX"}, 400, "CWLNA0112",
     ["AdminUserPassword", "mask"]),
    ("POST", "/ima/v1/configuration",
     {"CertificateProfile": {"C": {"Certificate": "/nonexistent.pem", "Key": "/nonexistent.key"}},
      "SecurityProfile": {"S": {"CertificateProfile": "C"}}}, 400, "CWLNA0112",
     ['CertificateProfile "C"', "attribute Certificate"]),
    ("DELETE", "/ima/v1/configuration/TopicPolicy/DemoTopicPolicy", None, 400, "CWLNA0112",
     ['Endpoint "DemoEndpoint"', "attribute TopicPolicies", "does not exist"]),
    ("DELETE", "/ima/v1/configuration/TopicPolicy/Nope", None, 404, "CWLNA0136",
     ['TopicPolicy "Nope"']),
    ("DELETE", "/ima/v1/configuration/Broker/Broker", None, 400, "CWLNA8002",
     ["not a named object"]),
    ("DELETE", "/ima/v1/configuration/Nope/x", None, 404, "CWLNA0136", ["Nope"]),
    ("PUT", "/ima/v1/configuration", {"Broker": {}}, 405, "CWLNA8008", ["method"]),
    ("GET", "/ima/v1/nothing", None, 404, "CWLNA0136", ["/ima/v1/configuration"]),
]


def test_bad_changes_are_refused_and_change_nothing(admin):
    """Proves every malformed or invalid change is refused in Amlen's shape, naming the object
    and the attribute, and that neither the running configuration nor the file changed."""
    before, file_before = admin.configuration(), admin.file_bytes()
    for method, path, body, status, code, fragments in BAD_CHANGES:
        raw = body if isinstance(body, bytes) else None
        got, answer, _ = admin.request(method, path, None if raw else body, raw=raw)
        assert got == status, (method, path, body, answer)
        refused(admin, status, code, answer, *fragments)
        assert admin.configuration() == before, (method, path, body)
        assert admin.file_bytes() == file_before, (method, path, body)
    assert admin.broker.alive()


def test_configuration_policies_grant_only_their_actions(start_broker):
    """Proves that with ConfigurationPolicies listed, an action no policy grants is refused
    with 403 and changes nothing, while the granted ones work."""
    a = start(start_broker,
              admin_endpoint={"ConfigurationPolicies": "Readers"},
              objects={"ConfigurationPolicy": {"Readers": {
                  "UserID": "admin", "ActionList": "View,Monitor"}}})
    try:
        assert a.configuration()["ConfigurationPolicy"]["Readers"]["ActionList"] == "View,Monitor"
        status, _, _ = a.get("/metrics")
        assert status == 200
        file_before = a.file_bytes()
        for method, path, body in [
                ("POST", "/ima/v1/configuration", {"Broker": {"MaxInflightMessages": 5}}),
                ("DELETE", "/ima/v1/configuration/TopicPolicy/DemoTopicPolicy", None),
                ("POST", "/ima/v1/service/stop", None),
                ("POST", "/ima/v1/service/close/connection", {"ClientID": "*"})]:
            status, answer, _ = a.request(method, path, body)
            assert status == 403, (path, answer)
            refused(a, 403, "CWLNA8004", answer, "Readers", "user \"admin\"", "127.0.0.1")
        assert a.file_bytes() == file_before
        assert a.broker.alive()
    finally:
        a.close()


def test_the_admin_password_changes_through_the_api(admin):
    """Proves POST {"AdminUserPassword": ...} takes a clear-text password, stores only its
    verifier, and the old password stops working at once."""
    answer = admin.ok("POST", "/ima/v1/configuration", {"AdminUserPassword": "n3w-pass"})
    assert answer["Applied"][0] == "AdminUserPassword" and answer["RestartNeeded"] == []
    text = admin.file_bytes().decode()
    assert "n3w-pass" not in text and "SCRAM-SHA-256$" in text
    status, _, _ = admin.get("/ima/v1/service/status")
    assert status == 401
    status, _, _ = admin.get("/ima/v1/service/status", password="n3w-pass")
    assert status == 200


def test_monitoring_matches_the_clients_connected(admin):
    """Proves the monitoring objects count real paho clients: the connections listed (with
    their messages), the subscription of a persistent session, the server's and the endpoint's
    totals, the sessions; and that bad parameters are refused naming them."""
    sub = admin.client(V5, "mon-sub", clean=False, session_expiry=600)
    assert sub.subscribe("mon/+", qos=1) == [1]
    pub = admin.client(V311, "mon-pub")
    admin.client(V5, "mon-idle")
    for n in range(5):
        pub.publish("mon/x", f"m{n}", qos=1)
    sub.wait_messages(5)
    rows = admin.monitor("Connection", "ClientID=mon-*&ResultCount=10")["Connection"]
    assert sorted(r["Name"] for r in rows) == ["mon-idle", "mon-pub", "mon-sub"]
    by_name = {r["Name"]: r for r in rows}
    assert by_name["mon-pub"]["ReadMsg"] == 5 and by_name["mon-sub"]["WriteMsg"] == 5
    assert by_name["mon-pub"]["Protocol"] == "MQTT 3.1.1"
    assert by_name["mon-sub"]["Endpoint"] == "DemoEndpoint"
    assert by_name["mon-sub"]["ClientAddr"] == "127.0.0.1"
    assert by_name["mon-pub"]["ReadBytes"] > 0 and by_name["mon-sub"]["WriteBytes"] > 0
    busiest = admin.monitor("Connection", "StatType=HighestThroughputMsgs&ResultCount=1")
    assert len(busiest["Connection"]) == 1
    assert busiest["Connection"][0]["Name"] in ("mon-pub", "mon-sub")
    subs = admin.monitor("Subscription", "ClientID=mon-sub")["Subscription"]
    assert subs == [{"SubName": "mon/+", "TopicString": "mon/+", "ClientID": "mon-sub",
                     "IsDurable": True, "IsShared": False, "BufferedMsgs": 0,
                     "BufferedPercent": 0.0, "MaxMessages": 5000}]

    def server_counts():
        s = admin.monitor("Server")["Server"]
        return s if (s["ActiveConnections"], s["MsgRead"], s["MsgWrite"]) == (3, 5, 5) else None
    server = wait_for(server_counts, timeout=5, message="the server's counters")
    assert server["ClientSessions"] == 3 and server["Subscriptions"] == 1
    assert server["TotalEndpoints"] == 1 and server["BytesRead"] > 0
    endpoint = admin.monitor("Endpoint")["Endpoint"]
    assert [e["Name"] for e in endpoint] == ["DemoEndpoint"]
    assert endpoint[0]["Active"] == 3 and endpoint[0]["ReadMsgs"] == 5
    sub.disconnect()
    clients = wait_for(lambda: [c for c in admin.monitor(
        "MQTTClient", "ConnectionState=Disconnected")["MQTTClient"]
        if c["ClientID"] == "mon-sub"], message="the disconnected session")
    assert clients[0]["IsConnected"] is False and clients[0]["LastConnectedTime"]
    memory = admin.monitor("Memory")["Memory"]
    assert memory["ServerResidentSetBytes"] > 0 and memory["MemoryTotalBytes"] > 0
    for query, code, fragment in [
            ("Connection?ResultCount=0", "CWLNA0112", "ResultCount"),
            ("Connection?StatType=Fastest", "CWLNA0112", "NewestConnection"),
            ("Connection?Colour=red", "CWLNA0138", "Colour"),
            ("Subscription?StatType=PublishedMsgsHighest", "CWLNA0112", "per subscription"),
            ("Endpoint?SubType=History", "CWLNA0112", "no history"),
            ("Queue", "CWLNA0136", "MQTTClient")]:
        status, answer, _ = admin.get(f"/ima/v1/monitor/{query}")
        refused(admin, status, code, answer, fragment)
        assert status in (400, 404), answer


def test_close_connection_disconnects_the_client(admin):
    """Proves close connection ends exactly the matching clients (a v5 client is told 0x98,
    Administrative action), and that a filter matching nobody or a malformed body is refused."""
    target = admin.client(V5, "close-me")
    bystander = admin.client(V5, "stay-here")
    answer = admin.ok("POST", "/ima/v1/service/close/connection",
                      {"ClientID": "close-me,nobody"})
    assert answer["Closed"] == 1
    assert target.disconnected.wait(5)
    assert target.disconnect_reason == 0x98
    assert not bystander.disconnected.is_set() and bystander.mqtt.is_connected()
    wait_for(lambda: not [r for r in admin.monitor("Connection")["Connection"]
                          if r["Name"] == "close-me"], message="the closed connection gone")
    for body, status, code, fragment in [
            ({"ClientID": "close-me"}, 404, "CWLNA0136", "no connection matches"),
            ({}, 400, "CWLNA8002", "at least one"),
            ({"Client": "x"}, 400, "CWLNA0138", "Client"),
            ({"ClientID": 7}, 400, "CWLNA0112", "must be a string")]:
        got, answer, _ = admin.request("POST", "/ima/v1/service/close/connection", body)
        assert got == status, (body, answer)
        refused(admin, status, code, answer, fragment)
    assert bystander.mqtt.is_connected()


def test_a_disconnected_session_is_deleted(admin):
    """Proves DELETE /service/MQTTClient refuses a connected client's session, deletes it once
    disconnected (the client comes back without it), and then finds nothing to delete."""
    c = admin.client(V5, "gone-soon", clean=False, session_expiry=600)
    status, answer, _ = admin.request("DELETE", "/ima/v1/service/MQTTClient/gone-soon")
    refused(admin, 409, "CWLNA8005", answer, "is connected")
    assert status == 409
    c.disconnect()
    admin.ok("DELETE", "/ima/v1/service/MQTTClient/gone-soon")
    assert not [x for x in admin.monitor("MQTTClient")["MQTTClient"]
                if x["ClientID"] == "gone-soon"]
    assert c.reconnect(clean=False).session_present is False
    c.disconnect()
    admin.ok("DELETE", "/ima/v1/service/MQTTClient/gone-soon")
    status, answer, _ = admin.request("DELETE", "/ima/v1/service/MQTTClient/gone-soon")
    refused(admin, 404, "CWLNA0136", answer, "gone-soon")


def metric(families: dict, name: str, **labels) -> float:
    """The value of the sample `name` with these labels."""
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_parse_and_count_the_traffic(admin):
    """Proves /metrics is Prometheus text that the official client's parser reads, and that
    its counters match the messages the test sent: received and sent per endpoint, bytes,
    connections, per-shard figures, memory."""
    sub = admin.client(V5, "prom-sub")
    sub.subscribe("prom/t", qos=1)
    pub = admin.client(V311, "prom-pub")
    n = 20
    for i in range(n):
        pub.publish("prom/t", b"x" * 100, qos=1)
    sub.wait_messages(n)

    def scrape():
        status, text, headers = admin.get("/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain"), text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        got = metric(families, "ironsight_messages_received_total", endpoint="DemoEndpoint")
        # The harness's probe of the MQTT port at start is a connection that never sent
        # CONNECT. Each shard publishes its counters on its own one-second tick, so the shard
        # that took the probe may still show it open after the other shows the messages.
        probe_closed = metric(families, "ironsight_connections_bad_total",
                              endpoint="DemoEndpoint") == 1
        return families if got == n and probe_closed else None
    families = wait_for(scrape, timeout=5, message="the counters of a scrape")
    assert metric(families, "ironsight_messages_sent_total", endpoint="DemoEndpoint") == n
    assert metric(families, "ironsight_connections", endpoint="DemoEndpoint") == 2
    accepted = metric(families, "ironsight_connections_accepted_total", endpoint="DemoEndpoint")
    bad = metric(families, "ironsight_connections_bad_total", endpoint="DemoEndpoint")
    assert accepted - bad == 2
    assert metric(families, "ironsight_bytes_received_total", endpoint="DemoEndpoint") > 100 * n
    assert metric(families, "ironsight_bytes_sent_total", endpoint="DemoEndpoint") > 100 * n
    assert metric(families, "ironsight_subscriptions") == 1
    assert metric(families, "ironsight_messages_buffered") == 0
    assert metric(families, "ironsight_messages_dropped_total", reason="rejected") == 0
    shards = [s for s in families["ironsight_shard_messages_received"].samples]
    assert sum(s.value for s in shards) == n and len(shards) >= 1
    assert families["ironsight_shard_cpu_seconds"].type == "counter"
    assert metric(families, "process_resident_memory_bytes") > 0
    assert families["ironsight_messages_received"].type == "counter"


def test_restart_and_stop(admin):
    """Proves POST restart stops the broker cleanly and starts it again in the same process,
    where clients connect again, and POST stop ends the process with status 0."""
    c = admin.client(V5, "restart-me")
    pid = admin.broker.pid
    answer = admin.ok("POST", "/ima/v1/service/restart")
    assert "restarting" in answer["Message"]
    assert c.disconnected.wait(5) and c.disconnect_reason == 0x8B  # Server shutting down
    admin.broker.wait_log(r"\bready\b", count=2, timeout=15)
    admin.broker.wait_log("admin endpoint listening", count=2)
    assert admin.broker.pid == pid and admin.broker.alive()
    again = admin.client(V5, "after-restart")
    assert again.mqtt.is_connected()
    admin.broker.stopped_by_us = True
    admin.ok("POST", "/ima/v1/service/stop")
    assert admin.broker.proc.wait(10) == 0


def test_the_admin_endpoint_speaks_https(start_broker, pki):
    """Proves an AdminEndpoint with a SecurityProfile answers over HTTPS with its certificate,
    and that plain HTTP gets no HTTP answer from it (a TLS alert at most)."""
    objects = tls_objects(pki)
    a = start(start_broker, admin_endpoint={"SecurityProfile": PROFILE}, objects=objects)
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    https = Admin(a.broker, a.port, "https", context)
    status, answer, _ = https.get("/ima/v1/service/status")
    assert status == 200 and answer["Server"]["Status"] == "Running"
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{a.port}/ima/v1/service/status", timeout=5)
    a.broker.wait_log(r'admin endpoint listening.*scheme="https"')


def test_no_admin_endpoint_no_api(start_broker):
    """Proves a configuration without an AdminEndpoint opens no REST API and says so."""
    b = start_broker()
    b.wait_log("no enabled AdminEndpoint")
    assert not re.search("admin endpoint listening", b.log_text())



def test_the_api_shows_what_sighup_applied(admin):
    """Proves a change made in the file and applied with SIGHUP is what the API shows from the
    first request after it (the API reads the file again once the broker's configuration
    generation moves), and that its next change starts from that file, not from its old view."""
    path = admin.broker.config_path
    document = json.loads(path.read_text())
    document["TopicPolicy"]["DemoTopicPolicy"]["MaxMessages"] = 4321
    path.write_text(json.dumps(document))
    admin.broker.hangup()
    assert admin.configuration()["TopicPolicy"]["DemoTopicPolicy"]["MaxMessages"] == 4321
    admin.ok("POST", "/ima/v1/configuration",
             {"TopicPolicy": {"DemoTopicPolicy": {"Description": "after SIGHUP"}}})
    on_disk = json.loads(path.read_text())["TopicPolicy"]["DemoTopicPolicy"]
    assert on_disk["MaxMessages"] == 4321 and on_disk["Description"] == "after SIGHUP", on_disk
