"""LDAP through the broker: clients log in with their directory passwords, their directory
groups (nested ones included) reach the policies' GroupID filters, and a directory that is dead
or slow is answered "server unavailable" within the LDAP object's Timeout, never a hang.

The directory is a real slapd (`slapd.py`) with users and nested groups; the clients are paho
(through `Client`) and raw packets, v3.1.1 and v5, each with its exact CONNACK or SUBACK.
"""

from __future__ import annotations

import time

import pytest

import mqtt_raw as m
from helpers import V5, V311
from slapd import DelayProxy, blackhole, slapd_fixture  # noqa: F401

pytestmark = pytest.mark.ironsight_only(reason="ironsight's LDAP object")

DEBUG = {"IRONSIGHT_LOG": "ironsight_core=debug,info"}
BAD_CREDENTIALS = {V5: 0x86, V311: 4}
UNAVAILABLE = {V5: 0x88, V311: 3}
REFUSED = {V5: 0x87, V311: 0x80}


def ldap_broker(start_broker, ldap: dict):
    objects = {
        "LDAP": ldap,
        "SecurityProfile": {"Directory": {"TLSEnabled": False,
                                          "UsePasswordAuthentication": True}},
        "TopicPolicy": {
            "Engineering": {"Topic": "eng/*", "GroupID": "Engineering",
                            "ActionList": "Publish,Subscribe"},
            "Own": {"Topic": "home/${UserID}/*", "ActionList": "Publish,Subscribe"},
        },
    }
    return start_broker(endpoint={"SecurityProfile": "Directory",
                                  "TopicPolicies": "Engineering,Own"},
                        objects=objects, env=DEBUG)


def raw(broker, proto) -> m.RawClient:
    return m.RawClient(broker.host, broker.port, version=proto)


@pytest.mark.parametrize("ignore_case", [False, True], ids=["exact case", "IgnoreCase"])
def test_directory_users_and_their_groups_reach_the_policies(start_broker, slapd, proto,
                                                             ignore_case):
    """alice (in Engineering) and bob (in devs, a member of Engineering: NestedGroupSearch)
    may subscribe to eng/news; carol (in no such group) is refused; each user reaches
    home/<self>/inbox and not another user's (${UserID} from the directory). With IgnoreCase
    (Amlen's default: the directory's names come in lower case) the policy's GroupID
    "Engineering" still names the group."""
    b = ldap_broker(start_broker, slapd.ldap_object(NestedGroupSearch=True,
                                                    IgnoreCase=ignore_case))
    for user, password, eng in [("alice", b"alice-pw", True), ("bob", b"bob-pw", True),
                                ("carol", b"carol-pw", False)]:
        c = raw(b, proto)
        assert c.connect(f"{user}-1", username=user, password=password).reason == 0, user
        suback = c.subscribe([("eng/news", 1), (f"home/{user}/inbox", 1), ("home/dave/inbox", 1)])
        assert suback.reasons == [1 if eng else REFUSED[proto], 1, REFUSED[proto]], user
        c.close()


@pytest.mark.parametrize("user, password", [("alice", b"wrong"), ("nobody", b"alice-pw"),
                                            ("alice", b"")],
                         ids=["wrong password", "unknown user", "empty password"])
def test_directory_refusals(start_broker, slapd, proto, user, password):
    """A wrong password, an unknown user and an empty password are each refused with bad user
    name or password (an empty password never reaches the directory as a bind)."""
    b = ldap_broker(start_broker, slapd.ldap_object())
    c = raw(b, proto)
    assert c.connect("x", username=user, password=password).reason == BAD_CREDENTIALS[proto]


@pytest.mark.parametrize("kind", ["dead", "slow"])
def test_a_dead_or_slow_directory_is_server_unavailable_in_time(start_broker, slapd, proto,
                                                                 kind):
    """A directory that accepts and never answers, or answers 8 s late, gets the client CONNACK
    server unavailable once the LDAP object's Timeout (2 s) passed, within 2 s more."""
    hole = proxy = None
    if kind == "dead":
        hole = blackhole()
        url = f"ldap://127.0.0.1:{hole.getsockname()[1]}"
    else:
        proxy = DelayProxy(slapd.port, 8.0)
        url = f"ldap://127.0.0.1:{proxy.port}"
    try:
        b = ldap_broker(start_broker, slapd.ldap_object(URL=url, Timeout=2, EnableCache=False))
        c = raw(b, proto)
        started = time.monotonic()
        assert c.connect("x", username="alice", password=b"alice-pw").reason \
            == UNAVAILABLE[proto]
        took = time.monotonic() - started
        assert 1.5 <= took <= 4.0, took
    finally:
        if hole:
            hole.close()
        if proxy:
            proxy.close()
