"""Authentication between CONNECT and CONNACK: who a client is, and what that lets it take.

An endpoint whose SecurityProfile requires client certificates (UseClientCertificate with
RequireClientCertificate) knows each client by its certificate: the common name is its user
id. The CONNECT waits for the auth service's verdict off the shard; these tests see the
verdict from outside: the CONNACK, the broker's "connected" line naming the user, and which
session a client id's second connection may take. With AllowNullPassword, a verified certificate
stands for the password of the user the CONNECT names, whose groups still come from the
directory (the users file, or a real slapd from `slapd.py`).
"""

from __future__ import annotations

import pytest

import mqtt_raw as m
from helpers import V5, V311
from scram_verifier import verifier
from slapd import slapd_fixture  # noqa: F401
from tls_setup import PROFILE, client_context, raw_tls, tls_endpoint, tls_objects

DEBUG = {"IRONSIGHT_LOG": "ironsight_core=debug,info"}
# CONNACK "not authorized": v5 reason 0x87, v3.1.1 return code 5.
NOT_AUTHORIZED = {V5: 0x87, V311: 5}
BAD_CREDENTIALS = {V5: 0x86, V311: 4}
REFUSED = {V5: 0x87, V311: 0x80}


def certificate_broker(start_broker, pki):
    return start_broker(endpoint=tls_endpoint(), env=DEBUG,
                        objects=tls_objects(pki, client_certificates=True, require=True))


def test_a_required_certificate_names_the_user(start_broker, pki, proto):
    """Each client is connected as the user its certificate names (CN device-1, and CN
    a/b, which holds a slash), as the broker's "connected" line shows."""
    b = certificate_broker(start_broker, pki)
    for cert, user in [("client", "device-1"), ("slash", "a/b")]:
        c = raw_tls(b, client_context(pki, cert), proto)
        assert c.connect(f"id-{cert}").reason == 0
        c.close()
        b.wait_log(rf'user="{user}" client_id=id-{cert} ')


def test_another_user_cannot_take_over_a_client_id(start_broker, pki, proto):
    """device-1 holds client id "twin". The user a/b connecting as "twin" is refused with
    CONNACK not authorized and device-1's connection stays up (it still answers PINGREQ);
    device-1 itself may take its session over (CONNACK 0, Session Present 1)."""
    b = certificate_broker(start_broker, pki)
    persistent = {"clean": False,
                  "props": {"session_expiry_interval": 300} if proto == V5 else None}
    owner = raw_tls(b, client_context(pki, "client"), proto)
    assert owner.connect("twin", **persistent).reason == 0

    intruder = raw_tls(b, client_context(pki, "slash"), proto)
    refused = intruder.connect("twin", **persistent)
    assert refused.reason == NOT_AUTHORIZED[proto]
    assert intruder.recv_until_closed() == []
    owner.send(m.pingreq())
    owner.expect(m.PINGRESP)

    again = raw_tls(b, client_context(pki, "client"), proto)
    connack = again.connect("twin", **persistent)
    assert (connack.reason, connack.session_present) == (0, True)
    again.close()


def test_an_unoffered_authentication_method_is_refused(start_broker, pki):
    """A v5 CONNECT naming an Authentication Method the endpoint does not offer is refused
    with CONNACK 0x8C (Bad authentication method) by the auth service [MQTT-4.12.0-1]."""
    b = certificate_broker(start_broker, pki)
    c = raw_tls(b, client_context(pki, "client"), V5)
    connack = c.connect("m1", props={"authentication_method": "NOT-A-METHOD"})
    assert connack.reason == 0x8C
    assert c.recv_until_closed() == []


@pytest.mark.parametrize("directory", ["users file", "LDAP"])
def test_a_certificate_stands_for_a_null_password(start_broker, pki, request, proto, directory):
    """AllowNullPassword on an endpoint with optional client certificates: a client with a
    verified certificate connects as the user it names without a password, and that user's
    groups (alice is in Engineering) reach the GroupID policy; a user the directory does not
    know connects with no groups; without a certificate, no password is bad credentials, and
    the right password still works."""
    objects = tls_objects(pki, client_certificates=True, require=False)
    objects["SecurityProfile"][PROFILE].update(UsePasswordAuthentication=True,
                                               AllowNullPassword=True)
    objects["TopicPolicy"] = {"Engineering": {"Topic": "eng/*", "GroupID": "Engineering",
                                              "ActionList": "Publish,Subscribe"}}
    if directory == "LDAP":
        objects["LDAP"] = request.getfixturevalue("slapd").ldap_object(IgnoreCase=False)
    else:
        objects["MessagingUser"] = {"alice": {
            "Password": verifier(b"alice-pw", b"null-password-salt"),
            "GroupMembership": "Engineering"}}
        objects["MessagingGroup"] = {"Engineering": {}}
    b = start_broker(endpoint=tls_endpoint(TopicPolicies="Engineering"), env=DEBUG,
                     objects=objects)

    for user, allowed in [("alice", True), ("nobody", False)]:
        c = raw_tls(b, client_context(pki, "client"), proto)
        assert c.connect(f"{user}-cert", username=user).reason == 0, user
        b.wait_log(rf'user="{user}" client_id={user}-cert ')
        assert c.subscribe([("eng/news", 1)]).reasons == [1 if allowed else REFUSED[proto]], user
        c.close()

    c = raw_tls(b, client_context(pki), proto)
    assert c.connect("alice-nocert", username="alice").reason == BAD_CREDENTIALS[proto]
    c = raw_tls(b, client_context(pki), proto)
    assert c.connect("alice-pw", username="alice", password=b"alice-pw").reason == 0
    assert c.subscribe([("eng/news", 1)]).reasons == [1]
    c.close()
