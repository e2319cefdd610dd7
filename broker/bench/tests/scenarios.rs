//! Black-box tests: start the real `ironsight` broker on a free loopback port and run every
//! scenario of `ironsight-bench` against it briefly, at modest rates, checking the one JSON
//! document each run prints; then the same over TLS, WebSocket and WebSocket inside TLS,
//! against a broker serving all four transports on one port with certificates made here.
//! Speed is never asserted; only that nothing was lost, duplicated or left unexplained.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a single bench run may take before the test kills it (runs bound themselves; this
/// only keeps a broken build from hanging the suite).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest the broker may take to accept connections.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A broker process, killed when dropped (also when a test panics).
struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("broker/bench sits two levels below the workspace")
        .to_path_buf()
}

/// The broker built from the sources of this test run, with the profile of this run.
///
/// The broker is another package's binary, so `env!("CARGO_BIN_EXE_ironsight")` does not exist
/// here (that takes artifact dependencies, which are unstable). Taking whichever of
/// `target/release/ironsight` and `target/debug/ironsight` existed ran a broker built from
/// whatever the sources were the last time someone built it: a test could pass on code that
/// was gone. So the broker is built here (once, whatever the number of tests asking) into the
/// directory cargo built the bench binary into for this run (`target/debug` under `cargo test`,
/// `target/release` under `cargo test --release`), which costs nothing when it is up to date,
/// and a binary older than any source file it was built from is refused.
fn broker_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_broker).clone()
}

fn build_broker() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_ironsight-bench"));
    let dir = bench
        .parent()
        .expect("the bench binary sits in a profile directory");
    let target = dir
        .parent()
        .expect("a profile directory sits in a target directory");
    let profile = match dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile directory above {}", bench.display()),
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "ironsight-server", "--bin", "ironsight"])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the broker failed");
    let binary = dir.join("ironsight");
    refuse_if_stale(&binary);
    binary
}

/// Panics if `binary` is older than a source file cargo's dep-info (`<binary>.d`, one line:
/// `binary: source source ...`, spaces in paths escaped) says it was built from.
fn refuse_if_stale(binary: &Path) {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let built = modified(binary);
    let dep_info = std::fs::read_to_string(binary.with_extension("d"))
        .unwrap_or_else(|e| panic!("{}.d: {e}", binary.display()));
    let (_, sources) = dep_info
        .split_once(": ")
        .expect("dep-info names its target first");
    // An escaped space is part of a path; NUL, which no path holds, stands for it meanwhile.
    let sources = sources.trim().replace("\\ ", "\0");
    for source in sources.split(' ').filter(|s| !s.is_empty()) {
        let source = PathBuf::from(source.replace('\0', " "));
        assert!(
            modified(&source) <= built,
            "{} is older than {}: refusing a stale broker",
            binary.display(),
            source.display()
        );
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts a one-shard broker with the built-in configuration.
fn start_broker() -> Broker {
    spawn_broker(&[])
}

/// Starts a one-shard broker (with `extra` arguments) and waits until it accepts connections.
fn spawn_broker(extra: &[&str]) -> Broker {
    let port = free_port();
    let child = Command::new(broker_binary())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--cores", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the broker starts");
    let broker = Broker { child, port };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < BROKER_START_TIMEOUT,
            "the broker did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

/// Runs the bench binary with `args` (plus --json-only), bounded by [`RUN_TIMEOUT`].
fn run_bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironsight-bench"))
        .args(args)
        .arg("--json-only")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bench starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            panic!("ironsight-bench {args:?} did not end within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs a scenario against `broker` and returns its JSON document, checking that stdout holds
/// exactly one and that the run succeeded.
fn bench(broker: &Broker, args: &[&str]) -> Value {
    let port = broker.port.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--port", &port]);
    let out = run_bench(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document: {e}"));
    for key in [
        "scenario",
        "parameters",
        "connections",
        "published",
        "expected",
        "received",
        "lost",
        "duplicates",
        "stale",
        "sent_rate",
        "received_rate",
        "latency",
        "backpressure_s",
        "tool_cpu",
        "errors",
    ] {
        assert!(report.get(key).is_some(), "{args:?}: no {key} in {report}");
    }
    report
}

fn u(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

/// Everything expected arrived exactly once, and nothing went wrong.
fn assert_clean(report: &Value) {
    assert!(u(report, "expected") > 0, "nothing expected: {report}");
    assert_eq!(u(report, "received"), u(report, "expected"), "{report}");
    assert_eq!(u(report, "lost"), 0, "{report}");
    assert_eq!(u(report, "duplicates"), 0, "{report}");
    assert_eq!(u(report, "unexpected"), 0, "misrouted: {report}");
    assert_eq!(report["connections"]["failed"], 0, "{report}");
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert!(report["latency"]["p50"].as_u64().is_some(), "{report}");
}

const BRIEF: [&str; 6] = ["--warmup", "0.3", "--duration", "1", "--drain", "5"];

fn brief(args: &[&'static str]) -> Vec<&'static str> {
    let mut v = args.to_vec();
    v.extend_from_slice(&BRIEF);
    v
}

/// Proves the connection scenario opens, holds, pings and closes every connection.
#[test]
fn conn_opens_pings_and_closes_all() {
    let broker = start_broker();
    let r = bench(
        &broker,
        &["conn", "-n", "60", "--rate", "600", "--hold", "0.5"],
    );
    assert_eq!(r["connections"]["opened"], 60, "{r}");
    assert_eq!(r["connections"]["alive"], 60, "{r}");
    assert_eq!(r["connections"]["failed"], 0, "{r}");
    assert_eq!(r["connections"]["lost"], 0, "{r}");
    assert_eq!(r["connections"]["connack_latency_us"]["count"], 60, "{r}");
    assert_eq!(r["errors"], Value::Array(vec![]), "{r}");
}

/// Proves fan-out delivers every window message to every subscriber, at every QoS and in
/// both protocol families; and that every window message's acknowledgement (PUBACK, PUBCOMP)
/// is timed once, none at QoS 0.
#[test]
fn fanout_every_qos_both_versions() {
    let broker = start_broker();
    for mqtt in ["3.1.1", "5"] {
        for qos in ["0", "1", "2"] {
            let args = brief(&[
                "fanout",
                "--publishers",
                "2",
                "--subscribers",
                "4",
                "--rate",
                "400",
                "--mqtt",
                mqtt,
                "--qos",
                qos,
            ]);
            let r = bench(&broker, &args);
            assert_clean(&r);
            assert_eq!(u(&r, "expected"), u(&r, "published") * 4, "{r}");
            let acknowledged = if qos == "0" { 0 } else { u(&r, "published") };
            assert_eq!(r["ack_latency"]["count"], acknowledged, "{r}");
        }
    }
}

/// Proves fan-in with per-publisher topics under a common prefix.
#[test]
fn fanin_prefix_wildcard() {
    let broker = start_broker();
    let args = brief(&[
        "fanin",
        "--publishers",
        "8",
        "--subscribers",
        "2",
        "--rate",
        "400",
        "--qos",
        "1",
    ]);
    let r = bench(&broker, &args);
    assert_clean(&r);
    assert_eq!(u(&r, "expected"), u(&r, "published") * 2, "{r}");
}

/// Proves a shared group receives each message once in total, with the group in one worker
/// and publishers spread over two worker processes.
#[test]
fn fanin_shared_group_two_procs() {
    let broker = start_broker();
    let args = brief(&[
        "fanin",
        "--publishers",
        "6",
        "--subscribers",
        "3",
        "--shared",
        "g1",
        "--rate",
        "300",
        "--qos",
        "2",
        "--procs",
        "2",
    ]);
    let r = bench(&broker, &args);
    assert_clean(&r);
    assert_eq!(u(&r, "expected"), u(&r, "published"), "{r}");
    assert_eq!(r["workers"], 2, "{r}");
}

/// Proves point-to-point pairs, split over two worker processes.
#[test]
fn p2p_pairs_two_procs() {
    let broker = start_broker();
    let args = brief(&[
        "p2p", "--pairs", "10", "--rate", "300", "--qos", "1", "--procs", "2",
    ]);
    let r = bench(&broker, &args);
    assert_clean(&r);
    assert_eq!(u(&r, "expected"), u(&r, "published"), "{r}");
}

/// Proves --broker-pid reports the broker's CPU in the measured window apart from the whole
/// run: the window's share is present, no larger than the run's, and its percentage is taken
/// over the window's length (a broker carrying messages uses some CPU in it).
#[test]
fn broker_cpu_in_the_measured_window() {
    let broker = start_broker();
    let pid = broker.child.id().to_string();
    let mut args: Vec<&str> = brief(&["p2p", "--pairs", "20", "--rate", "4000", "--qos", "1"]);
    args.extend(["--broker-pid", &pid]);
    let r = bench(&broker, &args);
    assert_clean(&r);
    let b = &r["broker"];
    let number = |key: &str| {
        b[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no broker.{key} in {r}"))
    };
    let (run_s, window_s) = (number("cpu_s"), number("window_cpu_s"));
    assert!(window_s > 0.0, "the broker worked in the window: {r}");
    assert!(window_s <= run_s, "the window is part of the run: {r}");
    let window_len = r["window_s"].as_f64().expect("window_s");
    let percent = number("window_cpu_percent");
    assert!(
        (percent - window_s * 100.0 / window_len).abs() < 0.2 * percent,
        "the percentage is over the window: {r}"
    );
}

/// Proves the retained storm gets every retained message to every subscriber, and that the
/// tree is cleared: a second run sees no stale retained messages from the first.
#[test]
fn retained_storm_and_clearing() {
    let broker = start_broker();
    let args = [
        "retained",
        "-k",
        "40",
        "--subscribers",
        "5",
        "--qos",
        "1",
        "--duration",
        "10",
    ];
    let first = bench(&broker, &args);
    assert_clean(&first);
    assert_eq!(u(&first, "expected"), 200, "{first}");
    let second = bench(&broker, &args);
    assert_clean(&second);
    assert_eq!(u(&second, "stale"), 0, "{second}");
}

/// Proves requests at QoS 2 get their QoS 1 responses with matching Correlation Data.
#[test]
fn request_response_round_trips() {
    let broker = start_broker();
    let args = brief(&["request-response", "--users", "4", "--rate", "200"]);
    let r = bench(&broker, &args);
    assert_clean(&r);
    assert_eq!(u(&r, "expected"), u(&r, "published"), "{r}");
}

/// Proves request-response refuses MQTT 3.1.1 with a clear error before connecting anything.
#[test]
fn request_response_refuses_v311() {
    let out = run_bench(&["request-response", "--mqtt", "3.1.1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MQTT 5"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// Proves --tls without --cafile is refused before anything connects, and non-loopback
/// targets are refused (outside a private network namespace, where they would be allowed).
#[test]
fn tls_without_ca_and_remote_targets_refused() {
    let tls = run_bench(&["conn", "--tls"]);
    assert_eq!(tls.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&tls.stderr).contains("--cafile"));
    if ironsight_bench::target::in_private_netns() {
        return;
    }
    let remote = run_bench(&["fanout", "--host", "192.0.2.1"]);
    assert_eq!(remote.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("loopback"));
}

/// A CA, a server certificate for 127.0.0.1 (X.509 v3, SAN IP 127.0.0.1) and a client
/// certificate from the same CA, with a broker configuration that serves MQTT over TCP, TLS,
/// WebSocket and WebSocket inside TLS on one port; in a fresh directory, removed when dropped.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// With `client_certificates`, the broker requires a client certificate from the CA.
    fn new(test: &str, client_certificates: bool) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = std::env::temp_dir().join(format!("isb-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(vec![]).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ironsight-bench test CA");
        let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let server_key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server parameters")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("the server certificate");
        let client_key = KeyPair::generate().expect("a client key");
        let mut client_params = CertificateParams::new(vec![]).expect("client parameters");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "bench-client");
        let client = client_params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("the client certificate");
        let files = [
            ("ca.pem", ca.pem()),
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ];
        for (name, pem) in files {
            std::fs::write(dir.join(name), pem).expect("write a PEM file");
        }
        let mut profile = serde_json::json!({"CertificateProfile": "Server"});
        let mut config = serde_json::json!({
            "MessageHub": {"Hub": {}},
            "ConnectionPolicy": {"Anyone": {"ClientID": "*"}},
            "TopicPolicy": {
                "Anything": {"Topic": "*", "ClientID": "*", "ActionList": "Publish,Subscribe"}
            },
            "CertificateProfile": {"Server": {"Certificate": "server.pem", "Key": "server.key"}},
            "Endpoint": {"E": {
                "Port": 8883,
                "MessageHub": "Hub",
                "ConnectionPolicies": "Anyone",
                "TopicPolicies": "Anything",
                "SecurityProfile": "Tls",
                "Transports": "mqtt,mqtts,ws,wss"
            }}
        });
        if client_certificates {
            profile["UseClientCertificate"] = true.into();
            config["TrustedCertificate"] =
                serde_json::json!([{"SecurityProfileName": "Tls", "TrustedCertificate": "ca.pem"}]);
        }
        config["SecurityProfile"] = serde_json::json!({ "Tls": profile });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write the config");
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn broker(&self) -> Broker {
        spawn_broker(&["--config", &self.path("config.json")])
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fan-out at QoS 1 over the transport `link` names (plus `args`), checked clean.
fn fanout_over(broker: &Broker, link: &[&str]) {
    let mut args = brief(&[
        "fanout",
        "--publishers",
        "2",
        "--subscribers",
        "4",
        "--rate",
        "400",
        "--qos",
        "1",
    ]);
    args.extend_from_slice(link);
    let r = bench(broker, &args);
    assert_clean(&r);
    assert_eq!(u(&r, "expected"), u(&r, "published") * 4, "{link:?}: {r}");
}

/// Proves fan-out over TLS delivers every message exactly once with TLS 1.2 and 1.3 (and
/// both offered), and that plain TCP still works on the same port.
#[test]
fn fanout_over_tls_each_version() {
    let pki = Pki::new("tls", false);
    let broker = pki.broker();
    let ca = pki.path("ca.pem");
    for version in [None, Some("1.2"), Some("1.3")] {
        let mut link = vec!["--tls", "--cafile", ca.as_str()];
        link.extend(version.iter().flat_map(|v| ["--tls-version", v]));
        fanout_over(&broker, &link);
    }
    fanout_over(&broker, &[]);
}

/// Proves fan-out over WebSocket (masked binary frames after the upgrade) delivers every
/// message exactly once, at QoS 0 and 2 as well, and over MQTT 3.1.1.
#[test]
fn fanout_over_websocket() {
    let pki = Pki::new("ws", false);
    let broker = pki.broker();
    fanout_over(&broker, &["--ws"]);
    for (mqtt, qos) in [("3.1.1", "0"), ("5", "2")] {
        let args = brief(&[
            "fanout",
            "--subscribers",
            "3",
            "--rate",
            "300",
            "--ws",
            "--mqtt",
            mqtt,
            "--qos",
            qos,
        ]);
        let r = bench(&broker, &args);
        assert_clean(&r);
        assert_eq!(u(&r, "expected"), u(&r, "published") * 3, "{r}");
    }
}

/// Proves WebSocket inside TLS carries fan-out and point-to-point traffic exactly once, and
/// that the connection scenario opens, pings and closes every connection over it.
#[test]
fn scenarios_over_wss() {
    let pki = Pki::new("wss", false);
    let broker = pki.broker();
    let ca = pki.path("ca.pem");
    let wss = ["--tls", "--cafile", ca.as_str(), "--ws"];
    fanout_over(&broker, &wss);
    let mut p2p = brief(&["p2p", "--pairs", "5", "--rate", "300", "--qos", "2"]);
    p2p.extend_from_slice(&wss);
    let r = bench(&broker, &p2p);
    assert_clean(&r);
    let mut conn = vec!["conn", "-n", "40", "--rate", "400", "--hold", "0.3"];
    conn.extend_from_slice(&wss);
    let r = bench(&broker, &conn);
    assert_eq!(r["connections"]["opened"], 40, "{r}");
    assert_eq!(r["connections"]["alive"], 40, "{r}");
    assert_eq!(r["errors"], Value::Array(vec![]), "{r}");
}

/// Proves --cert and --key present a client certificate: a broker that requires one opens
/// every connection that has it and none that has not, with the TLS failure reported.
#[test]
fn tls_client_certificate() {
    let pki = Pki::new("mtls", true);
    let broker = pki.broker();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let tls = [
        "conn", "-n", "20", "--rate", "400", "--hold", "0.3", "--tls", "--cafile", &ca,
    ];
    let with = [&tls[..], &["--cert", &cert, "--key", &key]].concat();
    let r = bench(&broker, &with);
    assert_eq!(r["connections"]["opened"], 20, "{r}");
    assert_eq!(r["connections"]["alive"], 20, "{r}");
    assert_eq!(r["errors"], Value::Array(vec![]), "{r}");
    let r = bench(&broker, &tls);
    assert_eq!(r["connections"]["opened"], 0, "{r}");
    assert_eq!(r["connections"]["failed"], 20, "{r}");
    assert!(r["errors"].to_string().contains("TLS"), "{r}");
}
