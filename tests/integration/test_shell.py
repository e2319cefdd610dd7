"""ironsight-shell as the login shell of an appliance's `admin` user, through a real OpenSSH sshd
(`sshd.py`): one command per `ssh admin@host <command>`, commands piped in, and an interactive
session typed into tmux. The admin endpoint is not running here (its port is closed), so the
commands that need it must say they cannot reach it; the tests against a live endpoint are in
`test_shell_api.py`.

Every way out to a general shell that an operator (or an attacker with the admin key) could
try must fail without running anything: each escape tries to create `Sshd.marker` (a file in a
folder `admin` may write to) and to print `id`'s `uid=`; neither may ever happen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from helpers import wait_for
from sshd import Sshd, Tmux

LINE_BYTES_MAX = 4096  # broker/shell/src/line.rs
EXIT_FAILED, EXIT_USAGE = 1, 2  # broker/shell/src/session.rs


@pytest.fixture(scope="module")
def sshd():
    server = Sshd()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def clean(sshd):
    """Fails the test if anything appeared in the drop folder: an escape that ran."""
    yield sshd
    assert not sshd.marker.exists(), "a command escaped the shell and created the marker"
    assert list(sshd.drop.iterdir()) == [], "a command escaped the shell and wrote a file"


def unreachable(sshd: Sshd) -> str:
    url = json.loads(sshd.settings_path.read_text())["AdminURL"]
    return f"error: cannot reach the admin endpoint at {url}: connection refused"


def test_a_command_over_ssh_says_the_endpoint_is_unreachable(clean):
    """`ssh admin@host status` runs the shell's status (sshd: `ironsight-shell -c status`),
    which names the URL from the settings file and the reason, with exit status 1."""
    result = clean.ssh("status")
    assert result.returncode == EXIT_FAILED, result
    assert result.stderr.strip() == unreachable(clean)
    assert result.stdout == ""


def test_help_over_ssh(clean):
    """help needs no endpoint: the list of commands, and one command's details."""
    result = clean.ssh("help")
    assert result.returncode == 0, result
    for command in ["status", "show", "list", "create", "update", "delete", "stat",
                    "close connection", "restart", "stop", "help", "exit"]:
        assert f"\n  {command}" in result.stdout, command
    result = clean.ssh("help stat")
    assert result.returncode == 0
    assert result.stdout.startswith("stat <Object> [<Filter>=<Value> ...]")
    words = " ".join(result.stdout.split())  # help is folded to the terminal's width
    assert "Server, Endpoint, Connection, Subscription, MQTTClient and Memory" in words


@pytest.mark.parametrize("line, message", [
    ("show Endpiont", 'error: "Endpiont" is not a configuration object type'),
    ("update Endpoint DemoEndpoint Enabled=maybe", "Enabled takes true or false"),
    ("update Endpoint DemoEndpoint", "update needs at least one <Attr>=<Value>"),
    ("create Broker B", "use update Broker"),
    ("close connection", "at least one of ClientID, UserID, ClientAddress"),
    ("stat Topic", 'error: "Topic" is not a monitoring object'),
    ("stop", "Nobody is here to confirm: write `stop force`"),
    ("restart", "Nobody is here to confirm: write `restart force`"),
    ('show Endpoint "unclosed', "a \" quote is not closed"),
])
def test_refused_lines_send_nothing_and_exit_2(clean, line, message):
    """A line the shell refuses is answered with the reason and the usage, exit status 2, and
    no request: the message is not the unreachable endpoint's."""
    result = clean.ssh(line)
    assert result.returncode == EXIT_USAGE, result
    assert message in result.stderr
    assert "cannot reach" not in result.stderr


def test_stop_force_is_sent(clean):
    """`stop force` needs no confirmation and goes to the endpoint (unreachable here)."""
    result = clean.ssh("stop force")
    assert result.returncode == EXIT_FAILED
    assert result.stderr.strip() == unreachable(clean)


@pytest.mark.parametrize("line, message", [
    ("bash", 'unknown command "bash"'),
    ("/bin/sh", 'unknown command "/bin/sh"'),
    ("sh -c 'touch {marker}'", 'unknown command "sh"'),
    ("exec /bin/bash", 'unknown command "exec"'),
    ("id", 'unknown command "id"'),
    ("-c 'touch {marker}'", 'unknown command "-c"'),
    ("!sh", "'!' at column 1 has no meaning here"),
    ("!!", "'!' at column 1"),
    ("; touch {marker}", "';' at column 1"),
    ("status; touch {marker}", "';' at column 7"),
    ("help; id", "';' at column 5"),
    ("status && touch {marker}", "'&' at column 8"),
    ("status | sh", "'|' at column 8"),
    ("$(touch {marker})", "'$' at column 1"),
    ("show Endpoint $(id)", "'$' at column 15"),
    ("`touch {marker}`", "'`' at column 1"),
    ("status > {marker}", "'>' at column 8"),
    ("status < /etc/shadow", "'<' at column 8"),
    ("status\ntouch {marker}", "control character U+000A at column 7"),
    ("status\rid", "control character U+000D at column 7"),
    ("status\ttouch", "control character U+0009"),
    ("status\x1b]2;x\x07", "control character U+001B"),
])
def test_escape_attempts_run_nothing(clean, line, message):
    """Each attempt is refused with its reason (exit status 2), runs nothing: no marker file,
    no `id` output."""
    line = line.format(marker=clean.marker)
    result = clean.ssh(line)
    assert result.returncode == EXIT_USAGE, result
    assert message in result.stderr, result.stderr
    assert "uid=" not in result.stdout + result.stderr


def test_quoted_shell_syntax_is_plain_text(clean):
    """Inside quotes `$(...)` and backticks are characters of a name, sent as they are (here to
    an unreachable endpoint); nothing expands them."""
    result = clean.ssh(f"show Endpoint \"$(touch {clean.marker})\" ")
    assert result.returncode == EXIT_FAILED, result
    assert result.stderr.strip() == unreachable(clean)
    result = clean.ssh(f"stat Connection ClientID='`touch {clean.marker}`'")
    assert result.returncode == EXIT_FAILED, result


def test_very_long_lines_are_refused(clean):
    """A line over LINE_BYTES_MAX is refused whole, with its length, even when it ends in an
    escape; one at the limit is read (and then refused for what it says)."""
    line = "show Endpoint " + "A" * LINE_BYTES_MAX + f"; touch {clean.marker}"
    result = clean.ssh(line)
    assert result.returncode == EXIT_USAGE
    assert (f"the line is {len(line)} bytes long; the longest accepted is {LINE_BYTES_MAX}"
            in result.stderr)
    at_limit = "show Endpiont " + "A" * (LINE_BYTES_MAX - len("show Endpiont "))
    result = clean.ssh(at_limit)
    assert result.returncode == EXIT_USAGE
    assert '"Endpiont" is not a configuration object type' in result.stderr


def test_a_terminal_does_not_change_the_answer(clean):
    """`ssh -t admin@host bash`: with a terminal allocated the shell still runs one command of
    its own, and `bash` is not one."""
    result = clean.ssh("bash", tty=True)
    assert result.returncode == EXIT_USAGE, result
    assert 'unknown command "bash"' in result.stdout  # a terminal merges stderr into stdout
    assert "uid=" not in result.stdout


def test_commands_piped_in_stop_at_the_first_failure(clean):
    """`ssh admin@host < file`: one command a line, in order; the first refused one ends the
    session with its status, and the lines after it never run."""
    result = clean.ssh(None, stdin=f"help\nbash\nstatus\ntouch {clean.marker}\n")
    assert result.returncode == EXIT_USAGE, result
    assert "Commands:" in result.stdout
    assert 'unknown command "bash"' in result.stderr
    assert "cannot reach" not in result.stderr
    long = "status " + "x" * (3 * LINE_BYTES_MAX) + "\nhelp\n"
    result = clean.ssh(None, stdin=long)
    assert result.returncode == EXIT_USAGE
    assert f"the line is {3 * LINE_BYTES_MAX + 7} bytes long" in result.stderr
    assert "Commands:" not in result.stdout


def test_file_transfer_is_refused(clean):
    """sftp and scp reach the host only through the login shell (sshd runs the sftp server and
    scp's remote end with `<shell> -c ...`), which runs neither: no file arrives."""
    target = clean.drop / "copied"
    key = str(clean.folder / "client_key")
    common = ["-F", "/dev/null", "-P", str(clean.port), "-i", key, "-o", "BatchMode=yes",
              "-o", "IdentitiesOnly=yes",
              "-o", f"UserKnownHostsFile={clean.folder / 'known_hosts'}"]
    source = str(clean.folder / "client_key.pub")
    sftp = subprocess.run(["sftp", *common, "-b", "-", "admin@127.0.0.1"],
                          input=f"put {source} {target}\n", capture_output=True, text=True,
                          timeout=20)
    assert sftp.returncode != 0, sftp
    for mode in (["-O"], []):  # legacy scp protocol, then scp over sftp
        scp = subprocess.run(["scp", *mode, *common, source, f"admin@127.0.0.1:{target}"],
                             capture_output=True, text=True, timeout=20)
        assert scp.returncode != 0, scp
    assert not target.exists()


def test_environment_sent_by_the_client_changes_nothing(clean, tmp_path):
    """The client sends variables: IRONSIGHT_SHELL_CONFIG naming a valid settings file for
    another URL (sshd accepts only LANG and LC_*, and its SetEnv wins anyway), LD_PRELOAD, and
    LANG / LC_* with shell syntax in them (accepted by sshd, meaningless to the shell). The
    shell still uses the settings sshd named and runs nothing else."""
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps({"AdminURL": "http://127.0.0.1:1"}))
    evil.chmod(0o644)
    # SetEnv sends a variable without setting it for the local ssh (LD_PRELOAD would load
    # into it); SendEnv sends the local ones.
    env = {"IRONSIGHT_SHELL_CONFIG": str(evil), "LANG": f"$(touch {clean.marker})",
           "LC_ALL": f"`touch {clean.marker}`", "LC_IRONSIGHT": f"; touch {clean.marker}"}
    options = ["-o", "SendEnv=IRONSIGHT_SHELL_CONFIG LANG LC_*",
               "-o", f"SetEnv=IRONSIGHT_SHELL_CONFIG={evil} LD_PRELOAD={evil}"]
    before = clean.log_text()
    result = clean.ssh("status", *options, env=env)
    assert result.returncode == EXIT_FAILED, result
    assert result.stderr.strip() == unreachable(clean)
    assert "127.0.0.1:1:" not in result.stderr
    # sshd did receive the variables (the test is not vacuous): it refused some, kept LC_*.
    log = clean.log_text()[len(before):]
    assert "Ignoring env request IRONSIGHT_SHELL_CONFIG: disallowed name" in log, log[-3000:]
    assert "Ignoring env request LD_PRELOAD: disallowed name" in log
    assert re.search(rf"Setting env \d+: LC_IRONSIGHT=; touch {re.escape(str(clean.marker))}",
                     log)


def test_an_interactive_session(clean):
    """Typed into a terminal (tmux running `ssh -t admin@host`): the banner and prompt, help,
    tab completion of commands, types, monitoring objects and filters, history on the Up key,
    a refused `!!`, Ctrl-C, Ctrl-Z and Ctrl-\\ that neither end nor suspend the session, a
    declined `stop`, and `exit` that ends it."""
    tmux = Tmux(clean.folder, clean.tmux_command())
    try:
        tmux.wait_for_text("ironsight>")
        screen = tmux.screen()
        assert "ironsight appliance shell. Type help for the commands" in screen
        assert f"Admin endpoint: {json.loads(clean.settings_path.read_text())['AdminURL']}" \
            in screen

        tmux.type("help")
        tmux.keys("Enter")
        tmux.wait_for_text("Commands:")
        tmux.wait_for_text("ironsight>", 2)

        # Completion: "sh<Tab>endp<Tab>" is "show Endpoint ".
        tmux.type("sh")
        tmux.keys("Tab")
        tmux.wait_for_text("ironsight> show")
        tmux.type("endp")
        tmux.keys("Tab")
        tmux.wait_for_text("ironsight> show Endpoint")
        tmux.keys("C-u")
        # Two candidates: the second Tab lists them.
        tmux.type("stat M")
        tmux.keys("Tab")
        tmux.keys("Tab")
        tmux.wait_for_text("MQTTClient  Memory")
        tmux.keys("C-u")
        tmux.type("stat Conn")
        tmux.keys("Tab")
        tmux.type("Res")
        tmux.keys("Tab")
        tmux.type("10")
        tmux.wait_for_text("ironsight> stat Connection ResultCount=10")
        tmux.keys("Enter")
        tmux.wait_for_text("error: cannot reach the admin endpoint")

        # History: Up brings the last line back.
        tmux.keys("Up")
        tmux.wait_for_text("ironsight> stat Connection ResultCount=10", 2)
        tmux.keys("C-u")

        # No history expansion, no job control, no quit: the session stays.
        tmux.type("!!")
        tmux.keys("Enter")
        tmux.wait_for_text("'!' at column 1 has no meaning here")
        for key in ["C-c", "C-z", "C-\\"]:
            tmux.keys(key)
        tmux.type(f"$(touch {clean.marker})")
        tmux.keys("Enter")
        tmux.wait_for_text("'$' at column 1")
        tmux.type("bash")
        tmux.keys("Enter")
        tmux.wait_for_text('unknown command "bash"')

        # stop asks; anything but "yes" is no.
        tmux.type("stop")
        tmux.keys("Enter")
        tmux.wait_for_text("Type yes to confirm:")
        tmux.type("y")
        tmux.keys("Enter")
        tmux.wait_for_text("Not confirmed: nothing was done.")

        tmux.type("help status")
        tmux.keys("Enter")
        tmux.wait_for_text("the broker's state and uptime")
        assert "uid=" not in tmux.screen()

        tmux.type("exit")
        tmux.keys("Enter")
        wait_for(lambda: not tmux.alive(), timeout=10,
                 message=lambda: f"the session to end:\n{tmux.screen()}")
    finally:
        tmux.close()


def test_the_admin_user_is_what_the_tests_think(clean):
    """Guards the premise of every test above: sshd logs `admin` in with the shell under test
    as its login shell (the passwd entry), and the escape folder is writable by admin, so an
    escape would have left its mark."""
    entry = subprocess.run(["getent", "passwd", "admin"], capture_output=True, text=True)
    assert entry.stdout.strip().split(":")[6] == str(clean.shell)
    probe = subprocess.run(["setpriv", "--reuid=admin", "--regid=admin", "--clear-groups",
                            "touch", str(clean.drop / "probe")], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    os.unlink(clean.drop / "probe")
