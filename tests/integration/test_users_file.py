"""The users file as an operator writes it, through `ironsight --check-config`: a MessagingUser's
Password is a SCRAM-SHA-256 verifier in PostgreSQL's text form, made by `ironsight-passwd` or by
any other implementation (here Python's hashlib, following RFC 5802 section 3, independent of
ironsight's code); a clear-text password and a membership cycle are refused, naming object and
attribute, and the password is never repeated."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from broker import IRONSIGHT_BIN, free_port
from scram_verifier import verifier

pytestmark = pytest.mark.ironsight_only(reason="ironsight's users file and its hash tool")

# The hash tool is built beside the broker (cargo build --release --workspace).
PASSWD_BIN = os.environ.get("IRONSIGHT_PASSWD_BIN", str(Path(IRONSIGHT_BIN).parent / "ironsight-passwd"))


def check_config(tmp_path, objects: dict) -> subprocess.CompletedProcess:
    """`ironsight --check-config` on a minimal configuration with `objects` added."""
    config = {
        "MessageHub": {"Hub": {}},
        "Endpoint": {"Edge": {"Port": free_port(), "MessageHub": "Hub", "ConnectionPolicies": "CP",
                              "TopicPolicies": "TP"}},
        "ConnectionPolicy": {"CP": {"ClientID": "*"}},
        "TopicPolicy": {"TP": {"Topic": "*", "ActionList": "Publish"}},
        **objects,
    }
    path = tmp_path / "users.json"
    path.write_text(json.dumps(config))
    return subprocess.run([IRONSIGHT_BIN, "--config", str(path), "--check-config"], capture_output=True,
                          text=True, timeout=10, stdin=subprocess.DEVNULL)


def test_a_verifier_made_elsewhere_is_taken_and_shown_back(tmp_path):
    """A verifier from another implementation (RFC 7677's example salt and password) is accepted
    and printed back byte for byte, with the user's groups and nested groups."""
    pencil = verifier(b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    assert pencil.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                             "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=")
    done = check_config(tmp_path, {
        "MessagingUser": {"alice": {"Password": pencil, "GroupMembership": "ops"}},
        "MessagingGroup": {"ops": {"GroupMembership": "staff"}, "staff": {}},
    })
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["MessagingUser"]["alice"] == {"Description": "", "Password": pencil,
                                               "GroupMembership": "ops"}
    assert shown["MessagingGroup"]["ops"]["GroupMembership"] == "staff"


def test_the_hash_tool_output_is_a_configuration_object(tmp_path):
    """`ironsight-passwd --user`, fed through a pipe, prints a MessagingUser that the broker takes;
    the verifier checks out against Python's own computation with its salt."""
    made = subprocess.run([PASSWD_BIN, "--user", "bob"], input=b"hunter2\n", capture_output=True, timeout=10)
    assert made.returncode == 0, made.stderr
    snippet = json.loads(made.stdout)
    password = snippet["MessagingUser"]["bob"]["Password"]
    salt = base64.b64decode(password.split("$")[1].split(":")[1])
    assert password == verifier(b"hunter2", salt)
    done = check_config(tmp_path, snippet)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["MessagingUser"]["bob"]["Password"] == password


@pytest.mark.parametrize("objects, message", [
    ({"MessagingUser": {"alice": {"Password": "s3cret-pencil"}}},
     'MessagingUser "alice", attribute Password: is not a SCRAM-SHA-256 verifier; a clear-text password or '
     "another kind of hash is refused: make a verifier with ironsight-passwd"),
    ({"MessagingGroup": {"a": {"GroupMembership": "b"}, "b": {"GroupMembership": "a"}}},
     'MessagingGroup "a", attribute GroupMembership: makes the group a member of itself: a -> b -> a'),
    ({"MessagingUser": {"alice": {"Password": verifier(b"x", b"0123456789abcdef"),
                                  "GroupMembership": "nope"}}},
     'MessagingUser "alice", attribute GroupMembership: names MessagingGroup "nope", which does not exist'),
])
def test_mistakes_are_refused_by_object_and_attribute(tmp_path, objects, message):
    """Each mistake stops the broker with status 2 and says which object and attribute; a
    clear-text password appears in no output."""
    done = check_config(tmp_path, objects)
    assert done.returncode == 2
    assert message in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
