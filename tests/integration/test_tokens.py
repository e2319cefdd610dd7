"""Tokens as passwords, as mobile apps authenticate: a JWTProfile (JWTs verified against a
local JWKS file) and MessageSight's OAuthProfile (an authorization server asked over HTTP).

The JWTs are signed here with keys made for the test (ES256, `cryptography`); the OAuth
authorization server is a stand-in on 127.0.0.1 that checks each request as a real one would
(POST, path, the token as the `access_token` form field) and counts them. Each case has its
exact CONNACK: accepted 0; a token that does not verify v5 0x86 / v3.1.1 4; an authorization
server that does not answer in time v5 0x88 / v3.1.1 3.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from paho.mqtt.enums import CallbackAPIVersion

import mqtt_raw as m
from helpers import V5, V311, wait_for

pytestmark = pytest.mark.ironsight_only("JWTProfile and OAuthProfile are ironsight's objects")

DEBUG = {"IRONSIGHT_LOG": "ironsight_core=debug,info"}
BAD_CREDENTIALS = {V5: 0x86, V311: 4}
UNAVAILABLE = {V5: 0x88, V311: 3}
ISSUER, AUDIENCE = "https://id.example.com", "mqtt"
# MessageSight's user name for a token password (its OAuth sample apps send it).
TOKEN_USER = "IMA_OAUTH_ACCESS_TOKEN"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    """An ES256 key pair made for the test, its JWK, and compact JWS signing."""

    def __init__(self, kid: str):
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())
        numbers = self.private.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                    "x": b64(numbers.x.to_bytes(32, "big")),
                    "y": b64(numbers.y.to_bytes(32, "big"))}

    def sign(self, claims: dict, kid: str | None = None) -> str:
        header = {"alg": "ES256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        der = self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def claims(**changes) -> dict:
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 600, "nbf": now - 5,
         "groups": ["staff"]}
    c.update(changes)
    return c


@pytest.fixture
def jwt_broker(start_broker, tmp_path):
    """A broker whose endpoint checks passwords as JWTs signed by `key` (kid k1)."""
    key = Key("k1")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.jwk]}))
    objects = {
        "SecurityProfile": {"Tokens": {"TLSEnabled": False, "JWTProfile": "Jwt"}},
        "JWTProfile": {"Jwt": {"KeyFileName": str(tmp_path / "jwks.json"), "Issuer": ISSUER,
                               "Audience": AUDIENCE, "ClockLeeway": 5}},
    }
    broker = start_broker(endpoint={"SecurityProfile": "Tokens"}, objects=objects, env=DEBUG)
    return broker, key


def raw(broker, proto) -> m.RawClient:
    return m.RawClient(broker.host, broker.port, version=proto)


def test_a_good_jwt_names_the_user(jwt_broker, proto):
    """A token signed by the JWKS key connects (CONNACK 0) as its `sub`, with the user name
    MessageSight's apps send, the user id itself, or (v5) none at all."""
    broker, key = jwt_broker
    token = key.sign(claims()).encode()
    names = [TOKEN_USER, "alice"] + ([None] if proto == V5 else [])
    for i, name in enumerate(names):
        c = raw(broker, proto)
        assert c.connect(f"phone-{i}", username=name, password=token).reason == 0, name
        c.close()
        broker.wait_log(rf'user="alice" client_id=phone-{i} ')


@pytest.mark.parametrize("case", ["expired", "wrong issuer", "wrong audience", "other key",
                                  "other user name", "not a token"])
def test_a_bad_jwt_is_refused(jwt_broker, proto, case):
    """Each token that must not verify gets CONNACK "bad user name or password" and the
    connection is closed: expired (beyond the 5 s leeway), another issuer or audience, signed
    by a key outside the JWKS file (though it claims its kid), a user name other than the
    token's user, and a password that is no JWT."""
    broker, key = jwt_broker
    now = int(time.time())
    token, name = {
        "expired": (key.sign(claims(exp=now - 60)), TOKEN_USER),
        "wrong issuer": (key.sign(claims(iss="https://evil.example.com")), TOKEN_USER),
        "wrong audience": (key.sign(claims(aud="billing")), TOKEN_USER),
        "other key": (Key("k1").sign(claims()), TOKEN_USER),
        "other user name": (key.sign(claims()), "bob"),
        "not a token": ("alice's password", "alice"),
    }[case]
    c = raw(broker, proto)
    assert c.connect("phone", username=name, password=token.encode()).reason \
        == BAD_CREDENTIALS[proto]
    assert c.recv_until_closed() == []


def test_a_real_client_with_a_token_publishes(jwt_broker):
    """paho-mqtt (v5), the token as its password, connects and gets its own message back:
    the authenticated session works like any other."""
    broker, key = jwt_broker
    got = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="app-1", protocol=mqtt.MQTTv5)
    client.username_pw_set(TOKEN_USER, key.sign(claims()))
    client.on_message = lambda *_: got.set()
    connected = []
    client.on_connect = lambda c, u, f, rc, p: connected.append(rc.value)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        wait_for(lambda: connected, message="CONNACK")
        assert connected == [0]
        client.subscribe("app/alice", qos=1)
        time.sleep(0.2)
        client.publish("app/alice", b"hello", qos=1)
        assert got.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()


class AuthorizationServer:
    """A stand-in OAuth authorization server on 127.0.0.1: POST /introspect with the form field
    access_token (Amlen's TokenSendMethod HTTPPost and AuthKey), answering as RFC 7662 does.
    Anything else gets 400, as a real server would answer it."""

    def __init__(self):
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                server.requests += 1
                length = int(self.headers.get("content-length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                kind = self.headers.get("content-type")
                if self.path != "/introspect" or kind != "application/x-www-form-urlencoded" \
                        or list(form) != ["access_token"]:
                    return self.reply(400, {"error": "invalid_request"})
                token = form["access_token"][0]
                if token == "slow-token":
                    time.sleep(3)
                if token in ("good-token", "slow-token"):
                    return self.reply(200, {"active": True, "client_id": "carol",
                                            "scope": "Group1,Group2",
                                            "exp": int(time.time()) + 600})
                self.reply(200, {"active": False})

            def reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def oauth_broker(start_broker):
    """A broker whose endpoint checks passwords with the stand-in authorization server, Amlen's
    attributes as its sample writes them, a 1 s Timeout."""
    server = AuthorizationServer()
    objects = {
        "SecurityProfile": {"Tokens": {"TLSEnabled": False, "OAuthProfile": "OAuth"}},
        "OAuthProfile": {"OAuth": {"ResourceURL": server.url, "AuthKey": "access_token",
                                   "UserInfoKey": "client_id", "GroupInfoKey": "scope",
                                   "GroupDelimiter": ",", "TokenSendMethod": "HTTPPost",
                                   "Timeout": 1}},
    }
    try:
        yield start_broker(endpoint={"SecurityProfile": "Tokens"}, objects=objects,
                           env=DEBUG), server
    finally:
        server.stop()


def test_oauth_tokens(oauth_broker, proto):
    """An access token the server vouches for connects as the user it names (and a second
    connect with it is served from the cache: one request); one it calls inactive is bad
    credentials; one it does not answer for within Timeout is "server unavailable"."""
    broker, server = oauth_broker
    for i in range(2):
        c = raw(broker, proto)
        assert c.connect(f"tab-{i}", username=TOKEN_USER, password=b"good-token").reason == 0
        c.close()
        broker.wait_log(rf'user="carol" client_id=tab-{i} ')
    assert server.requests == 1
    c = raw(broker, proto)
    refused = c.connect("tab-x", username=TOKEN_USER, password=b"revoked-token")
    assert refused.reason == BAD_CREDENTIALS[proto]
    started = time.monotonic()
    c = raw(broker, proto)
    slow = c.connect("tab-y", username=TOKEN_USER, password=b"slow-token")
    assert slow.reason == UNAVAILABLE[proto]
    assert time.monotonic() - started < 2.5


def test_sighup_reads_the_key_set_again(jwt_broker, tmp_path, proto):
    """SIGHUP reads the JWKS file again: after the file holds only a new key k2, a token of
    k2 connects and one of the old key is refused. A file that no longer parses keeps the key
    set in force (k2 still connects), and the log says why."""
    broker, old = jwt_broker
    new = Key("k2")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [new.jwk]}))
    broker.hangup()
    assert raw(broker, proto).connect("a", username=TOKEN_USER,
                                      password=new.sign(claims()).encode()).reason == 0
    assert raw(broker, proto).connect("b", username=TOKEN_USER,
                                      password=old.sign(claims()).encode()).reason \
        == BAD_CREDENTIALS[proto]

    (tmp_path / "jwks.json").write_text("{not json")
    broker.hangup()
    broker.wait_log("key set not reloaded; the old one stays")
    assert raw(broker, proto).connect("c", username=TOKEN_USER,
                                      password=new.sign(claims()).encode()).reason == 0
