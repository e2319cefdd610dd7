"""The LDAP test directory of `slapd.py`, checked with OpenLDAP's own clients (ldap-utils): what
the LDAP tests (broker/auth/tests/ldap.rs, and the broker's) take for granted about it."""

from __future__ import annotations

import subprocess
import time

from helpers import wait_for
from slapd import (BASE_DN, BIND_DN, BIND_PASSWORD, GROUPS, USERS, DelayProxy, find_program,
                   slapd_fixture, user_dn)  # noqa: F401 (slapd_fixture registers "slapd")


def whoami(url: str, dn: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run([find_program("ldapwhoami"), "-x", "-H", url, "-D", dn, "-w", password],
                          capture_output=True, text=True, timeout=30)


def search(url: str, base: str, ldap_filter: str, *attributes: str, bind: bool = True) -> str:
    credentials = ["-D", BIND_DN, "-w", BIND_PASSWORD] if bind else []
    done = subprocess.run([find_program("ldapsearch"), "-x", "-LLL", "-H", url, *credentials,
                           "-b", base, ldap_filter, *attributes],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 32), done.stderr
    return done.stdout


def test_users_bind_with_their_own_password_only(slapd):
    """A user with a + and a , in its DN binds with its password; a wrong password is LDAP's
    invalidCredentials (49); slapd's log shows the binds."""
    before = slapd.binds(user_dn("alice"))
    ok = whoami(slapd.url, user_dn("o+brien,jr"), USERS["o+brien,jr"])
    assert ok.returncode == 0, ok.stderr
    assert "ou=people" in ok.stdout
    wrong = whoami(slapd.url, user_dn("alice"), USERS["bob"])
    assert wrong.returncode == 49, wrong.stderr
    right = whoami(slapd.url, user_dn("alice"), USERS["alice"])
    assert right.returncode == 0, right.stderr
    assert slapd.binds(user_dn("alice")) == before + 2


def test_only_the_broker_searches_and_nobody_reads_passwords(slapd):
    """The broker's BindDN finds group memberships (a group inside a group too); anonymous
    finds nothing; no one reads userPassword."""
    devs = search(slapd.url, GROUPS, f"(member={user_dn('bob')})", "cn")
    assert "cn: devs" in devs
    nested = search(slapd.url, GROUPS, f"(member=cn=devs,{GROUPS})", "cn")
    assert "cn: Engineering" in nested
    assert "dn:" not in search(slapd.url, BASE_DN, "(uid=alice)", bind=False)
    alice = search(slapd.url, user_dn("alice"), "(objectClass=*)", "userPassword", "uid")
    assert "uid: alice" in alice
    assert "userPassword" not in alice


def test_the_proxy_delays_and_counts(slapd):
    """A client's request through a DelayProxy of 1 s takes at least 1 s; the proxy counts
    the connection, and sees it closed."""
    proxy = DelayProxy(slapd.port, 1.0)
    try:
        started = time.monotonic()
        done = whoami(f"ldap://127.0.0.1:{proxy.port}", user_dn("alice"), USERS["alice"])
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started >= 1.0
        wait_for(lambda: proxy.stats()["open"] == 0, message=lambda: str(proxy.stats()))
        assert proxy.stats() == {"accepted": 1, "open": 0, "max_open": 1}
    finally:
        proxy.close()
