"""The push gateway (`ironsight-push`) end to end: the real broker, real paho-mqtt clients, the
real gateway binary, and stand-ins for APNs and FCM (`push_standin.js`, an HTTP/2 server on
node's built-in http2 module) that check every request as Apple and Google would: the path,
the headers (apns-topic, apns-push-type, apns-priority), the ES256 provider token's signature
with the test key, the FCM service account's RS256 assertion at the token endpoint and then
the bearer token it issued, and the JSON body.

Most tests feed the gateway notifications on an ordinary topic (`NotificationTopic` is
configuration), published by the test exactly as the broker publishes them on
`$SYS/DisconnectedClientNotification`: that exercises the gateway's logic without the broker's
half. `test_a_sleeping_phone_is_woken_and_collects_its_messages` and
`test_the_readme_walk_through` run the real thing: the broker's own notifications (each
waits up to one DisconnClientNotifInterval, 15 s, the floor).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from helpers import V311, holds_for, wait_for
from push import Gateway, PushKeys, StandIn, gateway_config, notification, registration

pytestmark = pytest.mark.ironsight_only(reason="ironsight's push gateway")

#: The ordinary topic the tests publish notifications on, standing in for the $SYS one.
DCN = "TEST/DisconnectedClientNotification"
APNS_TOKEN = "a1" * 32
FCM_TOKEN = "fcm-token_1:APA91b"


@pytest.fixture
def push(tmp_path, pki, broker, client):
    """The stand-in, a factory for the gateway (started on `broker`, notifications on DCN),
    and a publisher; everything stopped by pid at teardown."""
    standin = StandIn(PushKeys.create(tmp_path / "keys"), pki)
    gateways: list[Gateway] = []
    publisher = client(V311, "backend")

    class Push:
        def __init__(self):
            self.standin, self.broker, self.publisher = standin, broker, publisher

        def gateway(self, **overrides) -> Gateway:
            config = gateway_config(broker, standin, pki, NotificationTopic=DCN, **overrides)
            g = Gateway(tmp_path, config).start()
            gateways.append(g)
            return g

        def register(self, user: str, client_id: str, platform: str, token: str,
                     gateway: Gateway) -> None:
            before = gateway.counters().get("registrations", 0)
            self.publisher.publish(f"APP/REGISTER/{user}/{client_id}",
                                   registration(platform, token), qos=1)
            wait_for(lambda: gateway.log().count("device registered") > before, 5,
                     message=gateway.log)

        def notify(self, client_id: str, user: str, counts: dict[str, int]) -> None:
            self.publisher.publish(DCN, notification(client_id, user, counts), qos=1)

    try:
        yield Push()
    finally:
        for g in gateways:
            g.stop()
        standin.stop()


def no_errors(requests: list[dict]) -> None:
    for r in requests:
        assert r["errors"] == [], r


def test_apns_push_is_what_apple_accepts_and_says_only_the_count(push):
    """A registered APNs device gets one POST /3/device/<token> over HTTP/2 with apns-topic,
    apns-push-type alert, priority 10, an ES256 JWT that verifies with the test key (kid,
    iss, iat), and a body that says "You have 3 new messages" and nothing of the topics."""
    g = push.gateway(Badge=True)
    push.register("alice", "alice-phone", "apns", APNS_TOKEN, g)
    push.notify("alice-phone", "alice", {"APP/NOTIFICATION/alice/secret-project": 2,
                                         "APP/NOTIFICATION/PUBLIC": 1})
    [r] = push.standin.wait(1, "apns", APNS_TOKEN)
    no_errors([r])
    assert r["http"] == "2.0"
    assert r["headers"]["apns-topic"] == "com.example.ironsight"
    assert r["headers"]["apns-push-type"] == "alert"
    assert r["headers"]["apns-priority"] == "10"
    assert r["body"] == {"aps": {"alert": "You have 3 new messages", "badge": 3}}
    assert "secret" not in json.dumps(r["body"])
    c = g.wait_counter("pushes_sent", 1)
    assert c["notifications_received"] == 1 and c["pushes_failed"] == 0, c


def test_fcm_push_uses_the_service_accounts_token(push):
    """FCM: the gateway trades an RS256 assertion (iss, aud = token_uri, scope) for an access
    token at the token endpoint, sends messages:send with it, reuses it for the next push,
    and when FCM says 401 gets a new one and sends again."""
    g = push.gateway()
    push.register("bob", "bob-phone", "fcm", FCM_TOKEN, g)
    push.notify("bob-phone", "bob", {"APP/NOTIFICATION/bob": 1})
    [r] = push.standin.wait(1, "fcm", FCM_TOKEN)
    no_errors(push.standin.received())
    assert r["body"]["message"]["token"] == FCM_TOKEN
    assert r["body"]["message"]["notification"] == {"body": "You have 1 new messages"}
    assert "APP/NOTIFICATION" not in json.dumps(r["body"])
    push.notify("bob-phone", "bob", {"APP/NOTIFICATION/bob": 2})
    push.standin.wait(2, "fcm", FCM_TOKEN)
    assert len(push.standin.received("oauth")) == 1, "the access token is reused"
    push.standin.forget_access_tokens()
    push.notify("bob-phone", "bob", {"APP/NOTIFICATION/bob": 3})
    push.standin.wait(3, "fcm", FCM_TOKEN)
    assert len(push.standin.received("oauth")) == 2, "a 401 gets a new access token"
    assert g.wait_counter("pushes_sent", 3)["pushes_failed"] == 0


def test_webhook_posts_the_notification(push):
    """A webhook device gets the notification as JSON (client, user, topics and counts, the
    token and the alert text) posted to the configured URL."""
    g = push.gateway()
    push.register("carol", "carol-tablet", "webhook", "relay-42", g)
    push.notify("carol-tablet", "carol", {"APP/NOTIFICATION/carol": 4})
    [r] = push.standin.wait(1, "webhook", "relay-42")
    no_errors([r])
    assert r["body"] == {"ClientId": "carol-tablet", "UserID": "carol", "Token": "relay-42",
                         "Alert": "You have 4 new messages", "MessagesArrived": [
                             {"TopicString": "APP/NOTIFICATION/carol", "MessageCount": 4}]}


def test_invalid_tokens_are_removed(push, tmp_path):
    """APNs 410 and 400 BadDeviceToken, FCM 404 UNREGISTERED and 400 INVALID_ARGUMENT about
    the token each remove the device: the token file no longer holds it, the failure is in
    the dead-letter log, and a later notification for it sends nothing."""
    g = push.gateway()
    devices = [("u1", "c-410", "apns", "b0" * 32, 410), ("u2", "c-400", "apns", "c0" * 32, 400),
               ("u3", "c-404", "fcm", "gone-token", 404), ("u4", "c-bad", "fcm", "bad-token", 400)]
    for user, client_id, platform, token, status in devices:
        push.register(user, client_id, platform, token, g)
        push.standin.answer(token, [status])
    for user, client_id, *_ in devices:
        push.notify(client_id, user, {"t": 1})
    c = g.wait_counter("invalid_tokens_removed", 4)
    assert c["pushes_sent"] == 0 and c["pushes_failed"] == 4, c
    wait_for(lambda: json.loads((tmp_path / "tokens.json").read_text())["Devices"] == {}, 5)
    dead = [json.loads(l) for l in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(d["ClientId"] for d in dead) == sorted(d[1] for d in devices)
    assert {d["Reason"].split(":")[0] for d in dead} == {"APNs 410", "APNs 400", "FCM 404", "FCM 400"}
    assert all("Token" not in d for d in dead), "no token in the dead-letter log"
    sent = len(push.standin.requests)
    for user, client_id, *_ in devices:
        push.notify(client_id, user, {"t": 1})
    g.wait_counter("notifications_unregistered", 4)
    assert len(push.standin.requests) == sent


def test_429_and_5xx_are_retried_within_bounds(push, tmp_path):
    """429 and 503 are tried again (the third attempt is sent); Retry-After is honoured (1 s,
    against a 100 ms backoff); a service failing every time gets exactly MaxAttempts (4)
    requests, and then the push is a dead letter."""
    g = push.gateway()
    push.register("u", "flaky", "apns", "d0" * 32, g)
    push.standin.answer("d0" * 32, [429, 503])
    push.notify("flaky", "u", {"t": 1})
    push.standin.wait(3, "apns", "d0" * 32)
    assert g.wait_counter("pushes_sent", 1)["pushes_retried"] == 2

    push.register("u", "slow", "fcm", "slow-token", g)
    push.standin.answer("slow-token", [{"status": 429, "retryAfter": 1}])
    push.notify("slow", "u", {"t": 1})
    first, second = push.standin.wait(2, "fcm", "slow-token")
    assert second["time"] - first["time"] >= 0.9, (first, second)

    push.register("u", "down", "webhook", "down-token", g)
    push.standin.answer("down-token", [500] * 10)
    push.notify("down", "u", {"t": 1})
    push.standin.wait(4, "webhook", "down-token")
    c = g.wait_counter("pushes_failed", 1)
    assert holds_for(lambda: len(push.standin.received("webhook", "down-token")) == 4, 1.0)
    dead = [json.loads(l) for l in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert [(d["ClientId"], d["Attempts"]) for d in dead] == [("down", 4)], dead
    assert c["invalid_tokens_removed"] == 0


def test_the_rate_limit_holds_and_adds_up(push):
    """With RateLimitInterval 2 s, three notifications in a row give one push at once and
    nothing more within the interval; the two held back go out together after it, counted
    together ("You have 5 new messages")."""
    g = push.gateway(RateLimitInterval=2)
    push.register("u", "busy", "webhook", "busy-token", g)
    push.notify("busy", "u", {"a": 1})
    push.standin.wait(1, "webhook", "busy-token")
    push.notify("busy", "u", {"a": 2})
    push.notify("busy", "u", {"b": 3})
    g.wait_counter("pushes_rate_limited", 2)
    assert holds_for(lambda: len(push.standin.received("webhook", "busy-token")) == 1, 1.0)
    first, second = push.standin.wait(2, "webhook", "busy-token", timeout=5)
    assert second["body"]["Alert"] == "You have 5 new messages"
    assert second["time"] - first["time"] >= 1.9


def test_registrations_are_checked_bounded_and_kept(push, tmp_path):
    """Bad registrations are refused (unknown platform, a non-hex APNs token, extra fields,
    not JSON, MaxDevices reached); a good one survives a restart of the gateway; an empty
    payload unregisters."""
    g = push.gateway(MaxDevices=2)
    for payload in [b'{"platform":"sms","token":"1"}', b'{"platform":"apns","token":"xyz"}',
                    b'{"platform":"fcm","token":"t","admin":true}', b"not json"]:
        push.publisher.publish("APP/REGISTER/eve/eve-1", payload, qos=1)
    g.wait_counter("registrations_refused", 4)
    push.register("u", "one", "webhook", "t1", g)
    push.register("u", "two", "webhook", "t2", g)
    push.publisher.publish("APP/REGISTER/u/three", registration("webhook", "t3"), qos=1)
    g.wait_counter("registrations_refused", 5)
    assert g.stop() == 0
    kept = json.loads((tmp_path / "tokens.json").read_text())["Devices"]
    assert set(kept) == {"one", "two"}
    g = push.gateway(MaxDevices=2)
    push.notify("two", "u", {"t": 1})
    push.standin.wait(1, "webhook", "t2")
    push.publisher.publish("APP/REGISTER/u/two", b"", qos=1)
    wait_for(lambda: "device unregistered" in g.log(), 5)
    push.notify("two", "u", {"t": 1})
    g.wait_counter("notifications_unregistered", 1)


def test_bad_notifications_and_other_users_do_not_push(push):
    """A notification that is not the broker's JSON is counted and skipped; one naming a
    client registered by another user pushes nothing; the gateway goes on."""
    g = push.gateway()
    push.register("alice", "alice-phone", "webhook", "alice-token", g)
    push.publisher.publish(DCN, b'{"ClientId": 5}', qos=1)
    push.notify("alice-phone", "mallory", {"t": 1})
    c = g.wait_counter("notifications_unregistered", 1)
    assert c["notifications_malformed"] == 1, c
    push.notify("alice-phone", "alice", {"t": 1})
    push.standin.wait(1, "webhook", "alice-token")
    assert len(push.standin.requests) == 1


def test_the_gateway_reconnects_when_the_broker_restarts(push):
    """The broker restarts: the gateway connects and subscribes again (with backoff), and
    pushes the next notification."""
    g = push.gateway()
    push.broker.restart()
    wait_for(lambda: g.log().count("subscribed") >= 2, 10, message=g.log)
    push.publisher.reconnect()
    push.register("u", "after", "webhook", "after-token", g)
    push.notify("after", "u", {"t": 1})
    push.standin.wait(1, "webhook", "after-token")


def test_the_gateway_logs_in_over_tls(tmp_path, pki, start_broker):
    """With MQTT.TLS and the test CA, the gateway connects to a TLS endpoint (checking the
    broker's certificate and name), subscribes, and pushes what arrives; with a CA that did
    not sign the broker's certificate it does not get in, and says why."""
    from helpers import Client
    from tls_setup import client_context, tls_endpoint, tls_objects

    broker = start_broker(endpoint=tls_endpoint("mqtts"), objects=tls_objects(pki))
    standin = StandIn(PushKeys.create(tmp_path / "keys"), pki)
    config = gateway_config(broker, standin, pki, NotificationTopic=DCN)
    config["MQTT"].update({"TLS": True, "CAFile": pki.path("ca.pem"), "ServerName": "localhost"})
    gateway = Gateway(tmp_path, config)
    (tmp_path / "stranger").mkdir()
    config["MQTT"]["CAFile"] = pki.path("other-ca.pem")
    stranger = Gateway(tmp_path / "stranger", config)
    publisher = Client(broker, V311, "backend", tls=client_context(pki))
    try:
        gateway.start()
        publisher.connect()
        publisher.publish("APP/REGISTER/u/c", registration("webhook", "tls-token"), qos=1)
        wait_for(lambda: "device registered" in gateway.log(), 5, message=gateway.log)
        publisher.publish(DCN, notification("c", "u", {"t": 1}), qos=1)
        standin.wait(1, "webhook", "tls-token")
        stranger.start(wait_subscribed=False)
        wait_for(lambda: "connection to the broker ended" in stranger.log(), 10,
                 message=stranger.log)
        assert "TLS" in stranger.log() and "subscribed" not in stranger.log(), stranger.log()
    finally:
        publisher.close()
        gateway.stop()
        stranger.stop()
        standin.stop()


def test_a_configuration_without_a_service_is_refused(tmp_path, broker, pki):
    """A configuration naming no push service (and one with an unknown attribute) makes the
    gateway exit with status 2, naming the attribute."""
    for config, said in [(gateway_config(broker, None, pki), "none of APNs, FCM and Webhook"),
                         ({**gateway_config(broker, None, pki), "Webhook": {"URL": "http://x/"},
                           "Colour": "blue"}, "unknown field `Colour`")]:
        g = Gateway(tmp_path, config).start(wait_subscribed=False)
        g.proc.wait(10)
        assert g.proc.returncode == 2 and said in g.log(), g.log()


#: The broker's notification interval in these tests, and how long a push may take to come:
#: a round comes within one interval (the first one an interval after the broker starts),
#: with slack for a tick and a busy machine.
NOTIFY_INTERVAL_S = 15
PUSH_WAIT_S = NOTIFY_INTERVAL_S + 10


@pytest.fixture(scope="module")
def verifiers() -> dict[str, str]:
    from test_password_authentication import hashed
    return {user: hashed(f"{user}-secret") for user in ("alice", "backend", "push")}


def app_objects(verifiers: dict[str, str]) -> dict:
    """The seed's notification pattern with password users: alice's notifications are marked
    DisconnectedClientNotification; she registers only her own client; the gateway's user
    reads the $SYS notifications and the registrations."""
    return {
        "SecurityProfile": {"Passwords": {"TLSEnabled": False, "UsePasswordAuthentication": True}},
        "MessagingUser": {
            "alice": {"Password": verifiers["alice"], "GroupMembership": "AppUsers"},
            "backend": {"Password": verifiers["backend"], "GroupMembership": "AppBackend"},
            "push": {"Password": verifiers["push"]}},
        "MessagingGroup": {"AppUsers": {}, "AppBackend": {}},
        # The gateway's policy first: its MaxMessages is the gateway session's queue, which a
        # round of notifications fills (docs/notification.md).
        "TopicPolicy": {
            "PushNotifications": {"Topic": "$SYS/DisconnectedClientNotification",
                                  "UserID": "push", "ActionList": "Subscribe",
                                  "MaxMessages": 100000},
            "PushRegistrations": {"Topic": "APP/REGISTER/*", "UserID": "push",
                                  "ActionList": "Subscribe"},
            "AppNotification": {"Topic": "APP/NOTIFICATION/${UserID}", "GroupID": "AppUsers",
                                "ActionList": "Subscribe", "DisconnectedClientNotification": True},
            "AppRegister": {"Topic": "APP/REGISTER/${UserID}/${ClientID}", "GroupID": "AppUsers",
                            "ActionList": "Publish"},
            "AppBackend": {"Topic": "APP/*", "GroupID": "AppBackend",
                           "ActionList": "Publish,Subscribe"}},
        # The scan's interval: Amlen's floor (the broker refuses less; its default is 60 s).
        "Broker": {"DisconnClientNotifInterval": NOTIFY_INTERVAL_S},
    }


def test_a_gateway_the_policies_do_not_grant_is_told_why(tmp_path, pki, start_broker,
                                                          verifiers):
    """Without a TopicPolicy granting its user Subscribe on the notification topic, the
    broker refuses the gateway's subscription; the gateway logs which topic and why, and
    keeps trying (with backoff) rather than running deaf."""
    objects = app_objects(verifiers)
    del objects["TopicPolicy"]["PushNotifications"]
    del objects["Broker"]
    broker = start_broker(endpoint={"SecurityProfile": "Passwords",
                                    "TopicPolicies": ",".join(objects["TopicPolicy"])},
                          objects=objects)
    config = gateway_config(broker, None, pki, Webhook={"URL": "http://127.0.0.1:9/"})
    config["MQTT"].update({"UserName": "push", "Password": "push-secret"})
    gateway = Gateway(tmp_path, config).start(wait_subscribed=False)
    try:
        refused = "refused the subscription to $SYS/DisconnectedClientNotification"
        wait_for(lambda: gateway.log().count(refused) >= 2, 10, message=gateway.log)
        assert "connected to the broker and subscribed" not in gateway.log()
    finally:
        gateway.stop()


def test_a_sleeping_phone_is_woken_and_collects_its_messages(tmp_path, pki, start_broker,
                                                              verifiers):
    """The whole story with the real $SYS topic and the real broker's notification: alice's
    phone (a persistent session subscribed on a policy marked DisconnectedClientNotification)
    registers its APNs token and disconnects; the back end publishes two messages to her; the
    broker's notification reaches the gateway (an authenticated client), whose push arrives at
    the APNs stand-in saying "You have 2 new messages"; the phone connects again and receives
    both messages."""
    from helpers import Client

    objects = app_objects(verifiers)
    broker = start_broker(endpoint={"SecurityProfile": "Passwords",
                                    "TopicPolicies": ",".join(objects["TopicPolicy"])},
                          objects=objects)
    standin = StandIn(PushKeys.create(tmp_path / "keys"), pki)
    config = gateway_config(broker, standin, pki)
    config["MQTT"].update({"UserName": "push", "Password": "push-secret"})
    gateway = Gateway(tmp_path, config)
    clients = []

    def login(user: str, client_id: str, clean: bool = True) -> Client:
        c = Client(broker, V311, client_id, clean=clean)
        c.mqtt.username_pw_set(user, f"{user}-secret")
        clients.append(c)
        c.connect()
        return c

    try:
        gateway.start()
        phone = login("alice", "alice-phone", clean=False)
        assert phone.subscribe("APP/NOTIFICATION/alice", 1) == [1]
        phone.publish("APP/REGISTER/alice/alice-phone", registration("apns", APNS_TOKEN), qos=1)
        wait_for(lambda: "device registered" in gateway.log(), 5, message=gateway.log)
        phone.disconnect()
        backend = login("backend", "backend-1")
        for text in (b"first", b"second"):
            assert backend.publish("APP/NOTIFICATION/alice", text, qos=1) == 0
        [r] = standin.wait(1, "apns", APNS_TOKEN, timeout=PUSH_WAIT_S)
        no_errors([r])
        assert r["body"]["aps"]["alert"] == "You have 2 new messages"
        assert gateway.wait_counter("pushes_sent", 1)["notifications_received"] >= 1
        woken = login("alice", "alice-phone", clean=False)
        assert [m.payload for m in woken.wait_messages(2)] == [b"first", b"second"]
    finally:
        for c in clients:
            c.close()
        gateway.stop()
        standin.stop()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "push"


def test_the_readme_walk_through(tmp_path, procs):
    """The README's "Waking sleeping phones", as a new user runs it: examples/push/ (the
    broker's configuration, the gateway's, and receiver.py, the stand-in push receiver),
    with the ports moved to free ones. alice's phone registers and subscribes with a
    persistent session, then leaves; the back end publishes two notifications; receiver.py
    prints "You have 2 new messages" for alice-phone; the phone reconnects and gets both."""
    import subprocess

    from broker import IRONSIGHT_BIN, free_port, port_open
    from helpers import Lines
    from push import PUSH_BIN

    for name in ("broker.json", "push.json", "receiver.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    mqtt_port, http_port = free_port(), free_port()
    config = json.loads((tmp_path / "push.json").read_text())
    config["MQTT"]["Port"] = mqtt_port
    config["Webhook"]["URL"] = f"http://127.0.0.1:{http_port}/push"
    (tmp_path / "push.json").write_text(json.dumps(config))
    broker = procs([IRONSIGHT_BIN, "--config", "broker.json",
                    "--listen", f"PushDemoEndpoint=127.0.0.1:{mqtt_port}"], cwd=tmp_path)
    wait_for(lambda: port_open("127.0.0.1", mqtt_port), 10)
    receiver = Lines(procs([sys.executable, "receiver.py", str(http_port)], cwd=tmp_path))
    receiver.wait(lambda line: line.startswith("stand-in push receiver on"), 10)
    gateway = procs([PUSH_BIN, "--config", "push.json"], cwd=tmp_path)
    login = {"alice": "alice-demo", "backend": "backend-demo"}

    def mqtt(tool: str, user: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tool, "-h", "127.0.0.1", "-p", str(mqtt_port), "-u", user,
                               "-P", login[user], *args], capture_output=True, text=True,
                              timeout=15)

    # Retained, as an app would: the gateway may not have subscribed yet.
    register = mqtt("mosquitto_pub", "alice", "-i", "alice-phone", "-q", "1", "-r",
                    "-t", "APP/REGISTER/alice/alice-phone",
                    "-m", '{"platform":"webhook","token":"alice-phone-token"}')
    assert register.returncode == 0, register.stderr
    sleep = mqtt("mosquitto_sub", "alice", "-i", "alice-phone", "-c", "-q", "1",
                 "-t", "APP/NOTIFICATION/alice", "-E")
    assert sleep.returncode == 0, sleep.stderr
    for text in ("first", "second"):
        sent = mqtt("mosquitto_pub", "backend", "-q", "1", "-t", "APP/NOTIFICATION/alice",
                    "-m", text)
        assert sent.returncode == 0, sent.stderr
    [pushed] = receiver.wait(lambda line: line.startswith("push for"), PUSH_WAIT_S,
                             what="a push")
    assert pushed == ("push for alice-phone (user alice, token alice-phone-token): "
                      "You have 2 new messages"), pushed
    woken = mqtt("mosquitto_sub", "alice", "-i", "alice-phone", "-c", "-q", "1",
                 "-t", "APP/NOTIFICATION/alice", "-C", "2", "-W", "10")
    assert woken.stdout.splitlines() == ["first", "second"], woken.stderr
    assert gateway.poll() is None and broker.poll() is None
