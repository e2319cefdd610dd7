"""Authentication between CONNECT and CONNACK: who a client is, and what that lets it take.

An endpoint whose SecurityProfile requires client certificates (UseClientCertificate with
RequireClientCertificate) knows each client by its certificate: the common name is its user
id. The CONNECT waits for the auth service's verdict off the shard; these tests see the
verdict from outside: the CONNACK, the broker's "connected" line naming the user, and which
session a client id's second connection may take.
"""

from __future__ import annotations

import pytest

import mqtt_raw as m
from helpers import V5, V311
from tls_setup import client_context, raw_tls, tls_endpoint, tls_objects

DEBUG = {"IRONSIGHT_LOG": "ironsight_core=debug,info"}
# CONNACK "not authorized": v5 reason 0x87, v3.1.1 return code 5.
NOT_AUTHORIZED = {V5: 0x87, V311: 5}


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
