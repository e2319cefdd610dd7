"""A real OpenLDAP `slapd` for the LDAP tests, and a TCP proxy that makes it slow.

`Slapd` starts the Debian package's slapd on free loopback ports, ldap:// and ldaps:// (its
certificate for 127.0.0.1 and localhost from the tests' own CA, `pki.py`), with a configuration
(slapd.conf, an mdb database) and a directory generated in a temporary folder, loaded with
`slapadd` before the start; it is stopped by its pid. Its log (`-d 256`: one line per
connection and operation, e.g. `conn=1001 op=1 BIND dn="uid=alice,ou=people,..."`) is
`Slapd.log_path`, so a test can see whether a request reached the directory at all.

The directory, under BASE_DN (dc=example,dc=com):

    ou=services  cn=broker    the broker's BindDN (BIND_DN, BIND_PASSWORD): reads everything
                              but passwords; nobody else may search
    ou=people    uid=<id>     one inetOrgPerson per USERS entry, userPassword {SSHA}-hashed;
                              among them "o+brien,jr" (a + and a , in its DN) and "star*"
    ou=groups    groupOfNames (member holds DNs):
                   cn=Engineering  alice, cn=devs        cn=devs    bob
                   cn=staff        cn=Engineering        cn=plus    o+brien,jr
                   cn=loop-a       carol, cn=loop-b      cn=loop-b  cn=loop-a   (a cycle)

`DelayProxy(port, delay_s)` forwards connections to a port, holding back what the client sends
by `delay_s` (a directory that is slow to answer), and counts connections (accepted, open now,
most open at once).

Use:
- from pytest: `from slapd import slapd_fixture  # noqa: F401` in a test module gives it the
  session fixture `slapd`, a running `Slapd`; `slapd.ldap_object(NestedGroupSearch=True)` is
  the broker's LDAP object for it.
- as a program (the Rust tests of broker/auth drive it so): `python3 tests/integration/slapd.py`
  prints one JSON line describing the directory ({"url", "port", "ldaps_port", "ca",
  "other_ca", "pid", "log", "base_dn", "bind_dn", "bind_password", "people", "groups",
  "users", "ldap_object"}; ca is the PEM of the CA that signed slapd's certificate, other_ca
  one that did not; ldap_object is `Slapd.ldap_object()`), then answers one JSON line per
  command read from stdin:
      proxy <delay_s>   start a DelayProxy to slapd         -> {"port"}
      stats <port>      that proxy's counts                 -> {"accepted", "open", "max_open"}
      blackhole         a port that accepts and never reads -> {"port"}
  End of input, or `stop`, stops everything, slapd by its pid: a test process that dies closes
  the pipe and so stops slapd too.

slapd comes from the Debian packages `slapd` and `ldap-utils`, which tests/run installs; when it
is missing this fails with a message saying so (never a skip).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pki import Pki

BASE_DN = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
BIND_DN = f"cn=broker,ou=services,{BASE_DN}"
BIND_PASSWORD = "broker-secret"

#: uid -> password. Tests that count a user's operations in the log use a user of their own
#: (the cache* ones, "empty", "marker", "pool"), since tests run side by side against one slapd.
USERS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "dave": "dave-pw",
    "o+brien,jr": "obrien-pw",
    "star*": "star-pw",
    "cache1": "cache1-pw",
    "cache2": "cache2-pw",
    "cache3": "cache3-pw",
    "empty": "empty-pw",
    "marker": "marker-pw",
    "pool": "pool-pw",
}

#: group cn -> members: ("user", uid) or ("group", cn).
GROUP_MEMBERS = {
    "Engineering": [("user", "alice"), ("group", "devs")],
    "devs": [("user", "bob")],
    "staff": [("group", "Engineering")],
    "plus": [("user", "o+brien,jr")],
    "loop-a": [("user", "carol"), ("group", "loop-b")],
    "loop-b": [("group", "loop-a")],
}

#: Bounds on waiting for slapd.
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def dn_value(value: str) -> str:
    """An attribute value escaped for a DN (RFC 4514), as the directory is written with it."""
    out = []
    for i, c in enumerate(value):
        if c in '"+,;<>\\=' or (i == 0 and c in " #") or (i == len(value) - 1 and c == " "):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def user_dn(uid: str) -> str:
    return f"uid={dn_value(uid)},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={dn_value(cn)},{GROUPS}"


def ssha(password: str) -> str:
    """The {SSHA} form of a password (SHA-1 over password and salt, then the salt)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def ldif(extra_users: dict[str, str] | None = None) -> str:
    """The whole directory as LDIF, with `extra_users` (uid -> password) beside USERS."""
    entries = [
        [f"dn: {BASE_DN}", "objectClass: dcObject", "objectClass: organization",
         "dc: example", "o: Example"],
        [f"dn: ou=services,{BASE_DN}", "objectClass: organizationalUnit", "ou: services"],
        [f"dn: {PEOPLE}", "objectClass: organizationalUnit", "ou: people"],
        [f"dn: {GROUPS}", "objectClass: organizationalUnit", "ou: groups"],
        [f"dn: {BIND_DN}", "objectClass: organizationalRole",
         "objectClass: simpleSecurityObject", "cn: broker", f"userPassword: {ssha(BIND_PASSWORD)}"],
    ]
    for uid, password in {**USERS, **(extra_users or {})}.items():
        entries.append([f"dn: {user_dn(uid)}", "objectClass: inetOrgPerson", f"uid: {uid}",
                        f"cn: {uid}", f"sn: {uid}", f"userPassword: {ssha(password)}"])
    for cn, members in GROUP_MEMBERS.items():
        lines = [f"dn: {group_dn(cn)}", "objectClass: groupOfNames", f"cn: {cn}"]
        for kind, name in members:
            lines.append(f"member: {user_dn(name) if kind == 'user' else group_dn(name)}")
        entries.append(lines)
    return "\n\n".join("\n".join(e) for e in entries) + "\n"


def find_program(name: str) -> str:
    for candidate in (os.environ.get(f"{name.upper()}_BIN"), shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        f"{name} not found: the LDAP tests need OpenLDAP's slapd (Debian packages slapd and "
        f"ldap-utils, which tests/run installs: apt-get install slapd ldap-utils)")


def schema_dir() -> Path:
    for d in (Path("/etc/ldap/schema"), Path("/etc/openldap/schema"), Path("/usr/local/etc/openldap/schema")):
        if (d / "core.schema").exists():
            return d
    raise RuntimeError("OpenLDAP's schema files (core.schema) not found: is slapd installed?")


def module_lines() -> list[str]:
    """Debian builds slapd's back-ends as modules; other builds link mdb in."""
    for d in (Path("/usr/lib/ldap"), Path("/usr/lib64/openldap"), Path("/usr/lib/openldap")):
        if any(d.glob("back_mdb*")):
            return [f"modulepath {d}", "moduleload back_mdb"]
    return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, alive, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Slapd:
    """A running slapd with the generated directory; a context manager."""

    def __init__(self, workdir: Path, extra_users: dict[str, str] | None = None):
        """`extra_users` (uid -> password) join USERS, for a benchmark's many users."""
        self.workdir = Path(workdir)
        self.extra_users = extra_users
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.ldaps_port = 0
        self.log_path = self.workdir / "slapd.log"
        self.pki: Pki | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def configure(self) -> Path:
        slapd = find_program("slapd")
        schema = schema_dir()
        self.pki = Pki.create(self.workdir / "pki")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "slapd.conf"
        lines = [f"include {schema / name}" for name in ("core.schema", "cosine.schema", "inetorgperson.schema")]
        lines += [
            f"pidfile {self.workdir / 'slapd.pid'}",
            f"argsfile {self.workdir / 'slapd.args'}",
            *module_lines(),
            f"TLSCACertificateFile {self.pki.path('ca.pem')}",
            f"TLSCertificateFile {self.pki.path('server.pem')}",
            f"TLSCertificateKeyFile {self.pki.path('server.key')}",
            "database mdb",
            f'suffix "{BASE_DN}"',
            f'rootdn "cn=admin,{BASE_DN}"',
            f"rootpw {base64.b64encode(os.urandom(12)).decode()}",
            f"directory {data}",
            "maxsize 16777216",
            "index objectClass eq",
            "index uid eq",
            "index member eq",
            # Passwords serve only binds; the broker reads the rest; nobody else sees anything.
            "access to attrs=userPassword by * auth",
            f'access to * by dn.exact="{BIND_DN}" read by self read by * none',
        ]
        conf.write_text("\n".join(lines) + "\n")
        (self.workdir / "directory.ldif").write_text(ldif(self.extra_users))
        load = subprocess.run([find_program("slapadd"), "-f", str(conf), "-b", BASE_DN,
                               "-l", str(self.workdir / "directory.ldif")],
                              capture_output=True, text=True, timeout=60)
        if load.returncode != 0:
            raise RuntimeError(f"slapadd failed ({load.returncode}): {load.stderr.strip()}")
        self.slapd_bin = slapd
        return conf

    def start(self) -> "Slapd":
        conf = self.configure()
        for _ in range(3):  # a free port can be taken between finding it and slapd's bind
            self.port, self.ldaps_port = free_port(), free_port()
            urls = f"{self.url}/ ldaps://127.0.0.1:{self.ldaps_port}/"
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.slapd_bin, "-f", str(conf), "-h", urls, "-d", "256"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            alive = lambda: self.proc.poll() is None  # noqa: E731
            if all(wait_port(p, alive, START_TIMEOUT_S) for p in (self.port, self.ldaps_port)):
                return self
            self.stop()
        raise RuntimeError(f"slapd did not start; its log:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def binds(self, dn: str) -> int:
        """How many BIND requests for `dn` slapd has logged (a request's line ends with its
        method; a successful one has a second line, with its mechanism)."""
        needle = f'BIND dn="{dn}" method='.lower()
        return sum(needle in line.lower() for line in self.log_text().splitlines())

    def ldap_object(self, **attributes) -> dict:
        """ironsight's LDAP object (Amlen's attributes) for this directory, searching users as
        the broker's BindDN, with `attributes` over it (`Timeout` is 5 s, to keep tests short)."""
        return {"URL": self.url, "BaseDN": BASE_DN, "BindDN": BIND_DN,
                "BindPassword": BIND_PASSWORD, "UserIdMap": "*:uid", "GroupSuffix": GROUPS,
                "GroupIdMap": "*:cn", "GroupMemberIdMap": "member", "Timeout": 5, **attributes}

    def describe(self) -> dict:
        return {"url": self.url, "port": self.port, "ldaps_port": self.ldaps_port,
                "ca": self.pki.path("ca.pem"), "other_ca": self.pki.path("other-ca.pem"),
                "pid": self.pid, "log": str(self.log_path),
                "base_dn": BASE_DN, "bind_dn": BIND_DN, "bind_password": BIND_PASSWORD,
                "people": PEOPLE, "groups": GROUPS, "users": USERS,
                "ldap_object": self.ldap_object()}

    def __enter__(self) -> "Slapd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class DelayProxy:
    """Forwards TCP connections from a loopback port to `target_port`, holding back each chunk
    the client sends by `delay_s`; counts connections."""

    def __init__(self, target_port: int, delay_s: float = 0.0):
        self.target_port = target_port
        self.delay_s = delay_s
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = self.open = self.max_open = 0
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stats(self) -> dict:
        with self.lock:
            return {"accepted": self.accepted, "open": self.open, "max_open": self.max_open}

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:  # the target is down: so is the proxied connection
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                self.sockets += [client, upstream]
            ends = [2]
            for src, dst, delay in ((client, upstream, self.delay_s), (upstream, client, 0.0)):
                threading.Thread(target=self._pump, args=(src, dst, delay, ends), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float, ends: list) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            ends[0] -= 1
            if ends[0] == 0:
                self.open -= 1

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                s.close()


def blackhole() -> socket.socket:
    """A listening socket nobody accepts on: connections complete (the kernel's backlog) and
    then nothing is ever read or answered."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def serve(workdir: Path) -> None:
    """The program: slapd, then commands from stdin until its end."""
    proxies: dict[int, DelayProxy] = {}
    holes: list[socket.socket] = []
    with Slapd(workdir) as slapd:
        print(json.dumps(slapd.describe()), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "stop":
                break
            if words[0] == "proxy":
                proxy = DelayProxy(slapd.port, float(words[1]) if len(words) > 1 else 0.0)
                proxies[proxy.port] = proxy
                answer = {"port": proxy.port}
            elif words[0] == "stats":
                answer = proxies[int(words[1])].stats()
            elif words[0] == "blackhole":
                holes.append(blackhole())
                answer = {"port": holes[-1].getsockname()[1]}
            else:
                answer = {"error": f"unknown command {words[0]!r}"}
            print(json.dumps(answer), flush=True)
        for proxy in proxies.values():
            proxy.close()
        for hole in holes:
            hole.close()


try:
    import pytest

    @pytest.fixture(scope="session", name="slapd")
    def slapd_fixture(tmp_path_factory):
        """A running slapd with the generated directory, for the whole session."""
        with Slapd(tmp_path_factory.mktemp("slapd")) as running:
            yield running
except ImportError:  # run as a program without pytest installed
    pass


if __name__ == "__main__":
    try:
        with tempfile.TemporaryDirectory(prefix="ironsight-slapd-") as tmp:
            serve(Path(tmp))
    except RuntimeError as e:
        print(f"slapd.py: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
