"""A real OpenSSH `sshd` whose `admin` user has `ironsight-shell` as login shell, for the shell's
tests (`test_shell.py`, `test_shell_api.py`).

`Sshd` starts the Debian package's sshd on a free loopback port with a host key, a client key
and a configuration of its own, all generated in a fresh folder (never the system's
/etc/ssh), and stops it by its pid. The configuration is an appliance's: key login for `admin`
only, no forwarding, no user environment or rc files, `AcceptEnv LANG LC_*` as Debian ships
it, an sftp subsystem run through the login shell as Debian ships it, and
`SetEnv IRONSIGHT_SHELL_CONFIG=<folder>/shell.json` (the shell's settings, written by
`write_settings`). `StrictModes no`: the folder sits under /tmp, which is world-writable, and
StrictModes refuses key files below such a directory.

The `admin` user is created when missing (useradd, as root: the tests run as root) with the
built `ironsight-shell` copied into the folder as its login shell (so that it can execute it
whatever the permissions of the build tree), and removed at the end; an existing `admin` has
its shell, home and password field set for the test and put back at the end.

`Sshd.drop` is a folder `admin` may write to: a command that escaped the shell could create
a file there, and `marker` is the file the escape tests try to create.

sshd, ssh, scp and sftp come from the Debian packages `openssh-server` and `openssh-client`,
tmux from `tmux`, which tests/run installs; when one is missing this fails with a message
saying so (never a skip).
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from broker import IRONSIGHT_BIN, free_port, port_open
from helpers import wait_for

SHELL_BIN = os.environ.get("IRONSIGHT_SHELL_BIN") or str(
    Path(IRONSIGHT_BIN).resolve().parent / "ironsight-shell")
SSHD_BIN = "/usr/sbin/sshd"
USER = "admin"

START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 5
# One ssh command, connection and login included; generous for a loaded machine.
SSH_TIMEOUT_S = 20


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


def _require(path_or_name: str, package: str) -> None:
    if not (os.access(path_or_name, os.X_OK) or shutil.which(path_or_name)):
        raise RuntimeError(f"{path_or_name} is missing: install the Debian package {package} "
                           "(tests/run does)")


def _processes_of(user: str) -> list[int]:
    """Pids whose real uid is `user`'s, from /proc (procps may not be installed)."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return []
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uids = next(line for line in status.read_text().splitlines()
                        if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue  # the process ended while we looked
        if int(uids.split()[1]) == uid:
            pids.append(int(status.parent.name))
    return pids


class Sshd:
    """One sshd for the admin user. `.port`, `.folder`, `.drop`, `.marker`; `ssh(...)` runs
    the client; `write_settings(...)` sets the shell's settings file."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the shell tests create the admin user and start sshd: run "
                               "them as root (tests/run does)")
        for tool, package in [(SSHD_BIN, "openssh-server"), ("ssh", "openssh-client"),
                              ("ssh-keygen", "openssh-client"), ("useradd", "passwd")]:
            _require(tool, package)
        if not os.access(SHELL_BIN, os.X_OK):
            raise RuntimeError(f"no ironsight-shell at {SHELL_BIN}: build it with "
                               "`cargo build --release -p ironsight-shell` or set "
                               "IRONSIGHT_SHELL_BIN")
        self.folder = Path(tempfile.mkdtemp(prefix="ironsight-sshd-"))
        self.folder.chmod(0o755)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.folder / "sshd.log"
        self.settings_path = self.folder / "shell.json"
        self.shell = self.folder / "ironsight-shell"
        self.home = self.folder / "home"
        self.drop = self.folder / "drop"
        self.marker = self.drop / "escaped"
        self._user_before: list[str] | None = None
        self._created_user = False
        try:
            shutil.copy(SHELL_BIN, self.shell)
            self.shell.chmod(0o755)
            self.home.mkdir(mode=0o755)
            self.drop.mkdir()
            self.drop.chmod(0o777)
            self._keys()
            self.write_settings({"AdminURL": f"http://127.0.0.1:{free_port()}"})
            self._config()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._user()  # last: nothing after it can fail and leave the user changed

    # -- setup --------------------------------------------------------------------------

    def _keys(self) -> None:
        for name in ("host_key", "client_key"):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                  "-f", str(self.folder / name)]).check_returncode()
        keys = self.folder / "authorized_keys"
        keys.mkdir(mode=0o755)
        (keys / USER).write_text((self.folder / "client_key.pub").read_text())
        host_pub = (self.folder / "host_key.pub").read_text().split()
        (self.folder / "known_hosts").write_text(
            f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")

    def _config(self) -> None:
        f = self.folder
        (f / "sshd_config").write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {f}/host_key
PidFile {f}/sshd.pid
AuthorizedKeysFile {f}/authorized_keys/%u
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers {USER}
PermitRootLogin no
PermitUserEnvironment no
PermitUserRC no
DisableForwarding yes
PermitTTY yes
AcceptEnv LANG LC_*
SetEnv IRONSIGHT_SHELL_CONFIG={self.settings_path}
PrintMotd no
PrintLastLog no
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel DEBUG2
""")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        check = _run([SSHD_BIN, "-t", "-f", str(f / "sshd_config")])
        assert check.returncode == 0, f"sshd refused its configuration: {check.stderr}"

    def _user(self) -> None:
        entry = _run(["getent", "passwd", USER])
        if entry.returncode == 0:
            self._user_before = entry.stdout.strip().split(":")
            shadow = _run(["getent", "shadow", USER]).stdout.strip().split(":")
            self._password_before = shadow[1] if len(shadow) > 1 else "!"
            _run(["usermod", "--shell", str(self.shell), "--home", str(self.home),
                  "--password", "*", USER]).check_returncode()
        else:
            # "*": no password login, but not locked ("!"), which sshd would refuse even for
            # a key when PAM is off.
            _run(["useradd", "--no-create-home", "--home-dir", str(self.home),
                  "--shell", str(self.shell), "--password", "*", USER]).check_returncode()
            self._created_user = True

    def write_settings(self, settings: dict) -> None:
        """The shell's settings file (root's, mode 0644, as on an appliance)."""
        self.settings_path.write_text(json.dumps(settings))
        self.settings_path.chmod(0o644)

    # -- life ---------------------------------------------------------------------------

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SSHD_BIN, "-D", "-e", "-f", str(self.folder / "sshd_config")],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not listen within {START_TIMEOUT_S}s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def close(self) -> None:
        """Stop sshd, then put the admin user back as it was, then remove the folder."""
        self.stop()
        # Sessions end with sshd; wait for their processes before the user goes.
        wait_for(lambda: not _processes_of(USER), timeout=STOP_TIMEOUT_S,
                 message="the admin user's processes to end")
        if self._created_user:
            _run(["userdel", USER]).check_returncode()
        elif self._user_before is not None:
            home, shell = self._user_before[5], self._user_before[6]
            _run(["usermod", "--shell", shell, "--home", home,
                  "--password", self._password_before, USER]).check_returncode()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- clients --------------------------------------------------------------------------

    def ssh_argv(self, *options: str, tty: bool = False) -> list[str]:
        """The ssh command line up to the destination (add the remote command after it)."""
        return ["ssh", "-F", "/dev/null", "-p", str(self.port),
                "-i", str(self.folder / "client_key"),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.folder / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
                "-tt" if tty else "-T", *options, f"{USER}@127.0.0.1"]

    def ssh(self, command: str | None, *options: str, stdin: str = "", tty: bool = False,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """`ssh admin@127.0.0.1 <command>` (the command is one argument: sshd hands it to the
        login shell as `-c <command>` exactly); None opens a session without a command."""
        # "--": a command that starts with "-" is the remote command, not an ssh option.
        argv = self.ssh_argv(*options, tty=tty) + (["--", command] if command is not None else [])
        return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=SSH_TIMEOUT_S,
                              env={**os.environ, **(env or {})})

    def tmux_command(self) -> str:
        """An interactive ssh session as one shell-quoted string, for tmux's new-session."""
        return shlex.join(self.ssh_argv(tty=True))


class Tmux:
    """A terminal for interactive sessions: a tmux server on a socket of its own running one
    command in a detached window; `type` sends text, `keys` sends keys by tmux name (Enter,
    Tab, Up, C-c), `screen` reads the pane with its scrollback."""

    def __init__(self, folder: Path, command: str, width: int = 120, height: int = 40) -> None:
        _require("tmux", "tmux")
        self.socket = folder / "tmux.sock"
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def _tmux(self, *args: str) -> subprocess.CompletedProcess:
        return _run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *args])

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text).check_returncode()

    def keys(self, *names: str) -> None:
        self._tmux("send-keys", "-t", "t", *names).check_returncode()

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-500").stdout

    def wait_for_text(self, text: str, count: int = 1, timeout: float = 10) -> str:
        """Wait until `text` is on the screen `count` times; return the screen."""
        return wait_for(lambda: self.screen().count(text) >= count and self.screen(), timeout,
                        message=lambda: f"{text!r} x{count} on the screen:\n{self.screen()}")

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", "t").returncode == 0

    def close(self) -> None:
        self._tmux("kill-server")
