"""The appliance's first-boot seed (image/rootfs/usr/lib/ironsight/ironsight-seed), outside a
VM: the script run on plain directories standing for the seed disk and the data partition, with
the real broker checking configurations (`ironsight --check-config`) and the real ssh-keygen
checking keys. It proves what the console reports and what the data partition keeps: the
defaults without a seed, a good seed applied, bad input refused item by item with the previous
setting kept, a seed applied once, and a kept configuration the broker refuses set aside. The
full image boots the same script under systemd in image/boot-test.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker import IRONSIGHT_BIN
from scram_verifier import verifier

pytestmark = pytest.mark.ironsight_only(
    reason="the appliance's seed checks configurations with the ironsight binary")

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "image" / "rootfs" / "usr" / "lib" / "ironsight" / "ironsight-seed"
#: The script makes two host keys and checks a configuration or two: well under a second.
RUN_TIMEOUT_S = 30



def builtin_config() -> dict:
    """The broker's built-in demo configuration, every default written out."""
    return json.loads(subprocess.run([IRONSIGHT_BIN, "--check-config"], check=True,
                                     capture_output=True, text=True).stdout)


#: A seed's configuration: the demo endpoint with the durable store on.
STORE_CONFIG = builtin_config()
STORE_CONFIG["Store"]["EnableDiskPersistence"] = True


@dataclass
class Appliance:
    """The directories one appliance's seed script works on, kept across its "boots"."""
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "config" / "ironsight.json"

    @property
    def network(self) -> Path:
        return self.root / "run" / "10-ironsight-static.network"

    @property
    def keys(self) -> Path:
        return self.data / "ssh" / "authorized_keys" / "admin"

    @property
    def password_file(self) -> Path:
        return self.data / "admin" / "shell.password"

    def config_json(self) -> dict:
        return json.loads(self.config.read_text())

    def default_config(self) -> dict:
        return json.loads((self.root / "default.json").read_text())

    def hostname(self) -> str:
        return (self.root / "hostname").read_text().strip()

    def boot(self, seed: Path | None = None) -> str:
        """Runs the seed script as ironsight-seed.service would, with `seed` as the mounted
        seed disk (None: no seed); returns what it printed (the console's lines)."""
        default = self.root / "default.json"
        if not default.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            default.write_text(json.dumps(builtin_config()))
        env = {**os.environ,
               "SEED_DIR": str(seed if seed is not None else self.root / "no-seed"),
               "DATA": str(self.data), "CONFIG_DIR": str(self.config.parent),
               "NETWORK_OUT": str(self.network), "HOSTNAME_OUT": str(self.root / "hostname"),
               "IRONSIGHT": IRONSIGHT_BIN, "DEFAULT_CONFIG": str(default)}
        done = subprocess.run(["sh", str(SEED)], env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
        assert done.returncode == 0, \
            f"the seed script must never fail the boot:\n{done.stdout}{done.stderr}"
        assert done.stderr == "", done.stderr
        return done.stdout


@pytest.fixture
def appliance(tmp_path) -> Appliance:
    return Appliance(tmp_path / "appliance")


def public_key(tmp_path: Path, name: str) -> str:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, timeout=RUN_TIMEOUT_S)
    return (tmp_path / f"{name}.pub").read_text()


#: The seed's file names, as keyword arguments of seed().
SEED_FILES = {"hostname": "hostname", "network": "network", "admin_pub": "admin.pub",
              "ironsight_json": "ironsight.json", "admin_password": "admin-password"}


def seed(tmp_path: Path, name: str, **files: str) -> Path:
    """A seed disk's files, named as in SEED_FILES."""
    directory = tmp_path / name
    directory.mkdir()
    for key, text in files.items():
        (directory / SEED_FILES[key]).write_text(text)
    return directory


def password_is(config: dict, password: str) -> bool:
    """Whether the configuration's AdminUserPassword is the SCRAM-SHA-256 verifier of
    `password` (recomputed with hashlib from the verifier's salt and iterations)."""
    found = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$.*", config.get("AdminUserPassword", ""))
    assert found, config.get("AdminUserPassword")
    iterations, salt = int(found.group(1)), base64.b64decode(found.group(2))
    return verifier(password.encode(), salt, iterations) == config["AdminUserPassword"]


def without_admin(config: dict) -> dict:
    """The configuration less what the appliance adds for ironsight-shell."""
    return {k: v for k, v in config.items() if k not in ("AdminEndpoint", "AdminUserPassword")}


def errors(console: str) -> list[str]:
    return [line for line in console.splitlines() if "SEED ERROR" in line]


def test_without_a_seed_the_demo_configuration_dhcp_and_new_host_keys(appliance):
    """No seed: the demo configuration (the broker's built-in one, written out) with the
    AdminEndpoint ironsight-shell speaks to and a REST password made for it (kept in a file
    only its owner reads), DHCP (no static network file), host name "ironsight", host keys made
    once and kept, and the console says SSH is not possible yet, without calling that a seed
    error."""
    console = appliance.boot()
    assert errors(console) == []
    config = appliance.config_json()
    assert without_admin(config) == appliance.default_config()
    assert config["AdminEndpoint"] == {}
    password = appliance.password_file.read_text().strip()
    assert len(password) >= 16
    assert appliance.password_file.stat().st_mode & 0o777 == 0o600
    assert password_is(config, password)
    assert "the demo configuration: MQTT on port 1883" in console
    assert not appliance.network.exists()
    assert "network: DHCP" in console
    assert appliance.hostname() == "ironsight"
    assert "no admin key: SSH login is not possible" in console
    host_key = (appliance.data / "ssh" / "ssh_host_ed25519_key.pub").read_text()
    assert "made the SSH host key" in console
    again = appliance.boot()
    assert "made the SSH host key" not in again
    assert (appliance.data / "ssh" / "ssh_host_ed25519_key.pub").read_text() == host_key
    assert appliance.config_json() == config, "a second boot changes nothing"


def test_a_good_seed_is_applied(appliance, tmp_path):
    """Every item of a good seed lands: the host name, a static network (as a networkd file),
    the admin's key (Windows line ends removed), the broker's configuration (with the
    AdminEndpoint added) and the REST administrator's password, written into it."""
    key = public_key(tmp_path, "admin-key")
    console = appliance.boot(seed(
        tmp_path, "good", hostname="broker-7\r\n",
        network="ADDRESS=192.0.2.10/24\nGATEWAY=192.0.2.1\nDNS=192.0.2.53\n",
        admin_pub=key.replace("\n", "\r\n"), ironsight_json=json.dumps(STORE_CONFIG),
        admin_password="a good password\n"))
    assert errors(console) == []
    assert appliance.hostname() == "broker-7"
    network = appliance.network.read_text()
    assert "Type=ether" in network
    assert "Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53" in network
    assert appliance.keys.read_text() == key
    config = appliance.config_json()
    assert without_admin(config) == STORE_CONFIG
    assert config["AdminEndpoint"] == {}
    assert password_is(config, "a good password")
    assert appliance.password_file.read_text() == "a good password\n"
    assert "ironsight.json (the seed of " in console


def test_bad_seed_input_is_reported_and_the_previous_settings_stay(appliance, tmp_path):
    """After a good seed, a seed with a malformed configuration, a key file with a line that
    is no key, a bad host name, a bad address and a short password: one SEED ERROR per item,
    naming what is wrong, and every previous setting is still in force."""
    key = public_key(tmp_path, "admin-key")
    appliance.boot(seed(tmp_path, "good", hostname="broker-7", network="ADDRESS=192.0.2.10/24\n",
                        admin_pub=key, ironsight_json=json.dumps(STORE_CONFIG),
                        admin_password="a good password"))
    network = appliance.network.read_text()
    config = appliance.config_json()
    console = appliance.boot(seed(
        tmp_path, "bad", hostname="-no-", network="ADDRESS=192.0.2.300/24\n",
        admin_pub=key + "ssh-ed25519 not-a-key\n", ironsight_json='{"Store": {',
        admin_password="short"))
    reported = errors(console)
    assert len(reported) == 5, console
    assert any('hostname "-no-" is not a valid host name; keeping broker-7' in e for e in reported)
    assert any("ADDRESS=192.0.2.300/24 is not an address" in e for e in reported)
    assert any("admin.pub: line 2 is not an SSH public key" in e for e in reported)
    assert any("ironsight.json is refused by ironsight --check-config" in e for e in reported)
    assert any("admin-password: the password must be one line of 8 characters" in e
               for e in reported)
    assert appliance.hostname() == "broker-7"
    assert appliance.network.read_text() == network
    assert appliance.keys.read_text() == key
    assert appliance.config_json() == config
    assert appliance.password_file.read_text() == "a good password\n"
    assert not (appliance.config.parent / "ironsight.json.seed").exists()


def test_a_first_seed_without_a_key_is_reported(appliance, tmp_path):
    """A seed that gives no admin key, where none was given before, is reported: nobody could
    log in. Its configuration is still applied."""
    console = appliance.boot(seed(tmp_path, "keyless", ironsight_json=json.dumps(STORE_CONFIG)))
    [reported] = errors(console)
    assert "the seed has no admin key (admin.pub)" in reported
    assert without_admin(appliance.config_json()) == STORE_CONFIG


def test_a_seed_is_applied_once(appliance, tmp_path):
    """The same seed at the next boot is skipped (a setting changed since is not undone); a
    changed seed is applied."""
    first = seed(tmp_path, "first", hostname="one")
    appliance.boot(first)
    (appliance.root / "hostname").write_text("changed-since\n")
    (appliance.data / "appliance" / "hostname").write_text("changed-since\n")
    console = appliance.boot(first)
    assert "already applied" in console
    assert appliance.hostname() == "changed-since"
    (first / "hostname").write_text("two\n")
    appliance.boot(first)
    assert appliance.hostname() == "two"


def test_a_kept_configuration_the_broker_refuses_is_set_aside(appliance, tmp_path):
    """A configuration on the data partition that this broker refuses (written for another
    version, or by hand) is reported, kept aside as ironsight.json.refused, and the demo
    configuration takes its place, so that the broker starts and the appliance is reachable."""
    appliance.boot()
    appliance.config.write_text('{"Endpoint": {"E": {"Port": "not a port"}}}')
    console = appliance.boot()
    [reported] = errors(console)
    assert "the kept configuration is refused" in reported
    assert (appliance.config.parent / "ironsight.json.refused").exists()
    config = appliance.config_json()
    assert without_admin(config) == appliance.default_config()
    assert password_is(config, appliance.password_file.read_text().strip())


def test_a_seed_configuration_keeps_its_own_admin_endpoint(appliance, tmp_path):
    """A seed's configuration that has an AdminEndpoint (here on all interfaces, another
    port) keeps it as given; only the password is written into it."""
    own = {**STORE_CONFIG, "AdminEndpoint": {"Port": 9443, "Interface": "All"}}
    console = appliance.boot(seed(tmp_path, "own", ironsight_json=json.dumps(own),
                                  admin_password="a good password"))
    assert "an AdminEndpoint added" not in console
    config = appliance.config_json()
    assert config["AdminEndpoint"] == {"Port": 9443, "Interface": "All"}
    assert password_is(config, "a good password")
