"""Fixtures for the black-box suite.

- `broker`: a fresh broker process per test on a free loopback port (isolation first: no test
  sees another's sessions or retained messages). Configure it with a marker,
  `@pytest.mark.broker_config(max_messages=10)`, or call `broker.restart(broker_config(...))`.
  At teardown the test fails if the broker died during it (a crash is always a bug).
- `proto`: parametrizes a test over MQTT 3.1.1 (level 4, id `v311`) and 5.0 (level 5, id `v5`).
- `client` / `raw`: factories for paho clients and raw-socket clients, closed at teardown.
- `start_broker`: a factory for tests that need ironsight's own objects: start_broker(
  endpoint={...}, objects={...}, env={...}, args=[...]) starts one and checks it at teardown
  like `broker` does.
- `pki`: certificates for the TLS tests (`pki.py`), made once per session.
- `ironsight_only(reason)`: skipped under BROKER=mosquitto, never under ironsight.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import mqtt_raw
from broker import KIND, Broker, BrokerConfig
from helpers import PROTO_IDS, V5, V311, Client
from pki import Pki


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ironsight_only(reason): ironsight behaviour that Mosquitto does not share; "
        "skipped under BROKER=mosquitto, never under ironsight")
    config.addinivalue_line(
        "markers", "broker_config(**kw): start the test's broker with broker_config(**kw)")


def pytest_collection_modifyitems(config, items):
    # RUN_IRONSIGHT_ONLY=1 runs them under Mosquitto too, to see how Mosquitto differs.
    if KIND != "mosquitto" or os.environ.get("RUN_IRONSIGHT_ONLY") == "1":
        return
    for item in items:
        marker = item.get_closest_marker("ironsight_only")
        if marker:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"ironsight only: {reason}"))


def pytest_report_header(config):
    return f"broker under test: {KIND}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the broker's log to the report of a failed test, so pytest prints it. The broker
    is stopped first: Mosquitto buffers its log when it is not a terminal, and stopping flushes
    it (the fixture's own stop is then a no-op)."""
    outcome = yield
    report = outcome.get_result()
    broker = getattr(item, "_broker", None)
    if report.failed and broker is not None and report.when == "call":
        note = "" if broker.alive() or broker.proc is None else \
            f"\n*** the broker had exited with status {broker.proc.returncode}\n"
        broker.stop()
        report.sections.append((f"{broker.kind} log ({broker.log_path})",
                                broker.log_text()[-20000:] + note))


@pytest.fixture(params=[V311, V5], ids=[PROTO_IDS[V311], PROTO_IDS[V5]])
def proto(request) -> int:
    """The MQTT protocol level under test: 4 (3.1.1) or 5 (5.0)."""
    return request.param


def _stop_and_check(b: Broker) -> None:
    """Stop a test's broker; fail the test if it had died by itself."""
    died = b.proc is not None and not b.alive() and not b.stopped_by_us
    code = b.proc.returncode if died else None
    b.stop()
    assert not died, f"the broker died during the test (exit status {code})"


@pytest.fixture
def broker(request, tmp_path):
    marker = request.node.get_closest_marker("broker_config")
    config = BrokerConfig(**marker.kwargs) if marker else BrokerConfig()
    b = Broker(tmp_path, config)
    request.node._broker = b
    b.start()
    try:
        yield b
    finally:
        _stop_and_check(b)


@pytest.fixture
def start_broker(request, tmp_path):
    """Factory: start_broker(config=None, endpoint=None, objects=None, env=None, args=None) ->
    a started Broker (see broker.Broker); one per test. Its log goes with a failure report."""
    started: list[Broker] = []

    def start(config: BrokerConfig | None = None, **kw) -> Broker:
        assert not started, "one broker per test"
        b = Broker(tmp_path, config, **kw)
        request.node._broker = b
        started.append(b)
        b.start()
        return b

    yield start
    for b in started:
        _stop_and_check(b)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """The test certificates (`pki.py`), in a directory shared by the session. A test that
    changes files copies them first."""
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def client(broker):
    """Factory: client(proto, client_id, **kw) -> a connected helpers.Client (connect=False to
    leave it unconnected)."""
    made: list[Client] = []

    def make(proto: int, client_id: str = "", connect: bool = True, **kw) -> Client:
        c = Client(broker, proto, client_id, **kw)
        made.append(c)
        if connect:
            c.connect()
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def raw(broker):
    """Factory: raw(version) -> an unconnected mqtt_raw.RawClient to the broker."""
    made: list[mqtt_raw.RawClient] = []

    def make(version: int = 5, **kw) -> mqtt_raw.RawClient:
        r = mqtt_raw.RawClient(broker.host, broker.port, version, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def procs():
    """Factory: procs(argv) -> a subprocess.Popen (stdout and stderr piped, stdin empty unless
    given) that is terminated and reaped at teardown, so no mosquitto_sub is left behind."""
    started: list[subprocess.Popen] = []

    def spawn(argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        started.append(p)
        return p

    yield spawn
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream:
                stream.close()


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under tests/run (IRONSIGHT_NO_SKIPS=1) a skipped test fails the run: a test that did not
    run proves nothing, and tests/run installs every client the suite needs."""
    if KIND == "ironsight" and os.environ.get("IRONSIGHT_NO_SKIPS") == "1" and _skipped:
        print(f"\n{len(_skipped)} tests were skipped, which IRONSIGHT_NO_SKIPS=1 forbids:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
