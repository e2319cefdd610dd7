//! The real slapd of `tests/integration/slapd.py`, driven from Rust: one per test binary,
//! started on first use and stopped when the binary exits (its end closes the harness's
//! stdin, and the harness then stops slapd by its pid). See that file for the directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Slapd {
    /// slapd's process id (the bench reads its CPU time; the tests need it not).
    #[allow(dead_code)]
    pub pid: u32,
    pub port: u16,
    /// ldaps://, with a certificate for 127.0.0.1 signed by `ca`.
    pub ldaps_port: u16,
    /// PEM files: the CA that signed slapd's certificate, and one that did not.
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub people: String,
    log: PathBuf,
    /// The LDAP object for this directory, as the harness writes it.
    object: Value,
    control: Mutex<Control>,
}

struct Control {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Kept so that the harness is not reaped early; it ends when our stdin to it closes.
    _child: Child,
}

/// A proxy's connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    pub accepted: u64,
    pub open: u64,
    pub max_open: u64,
}

/// The test binary's slapd.
pub fn slapd() -> &'static Slapd {
    static SLAPD: OnceLock<Slapd> = OnceLock::new();
    SLAPD.get_or_init(start)
}

fn start() -> Slapd {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/integration/slapd.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let info = read_json(&mut stdout).unwrap_or_else(|| {
        panic!(
            "the slapd harness ended without starting slapd (its message is above): the LDAP \
             tests need the Debian packages slapd and ldap-utils, which tests/run installs"
        )
    });
    let text = |key: &str| info[key].as_str().expect("a string").to_string();
    Slapd {
        pid: info["pid"].as_u64().expect("a pid") as u32,
        port: info["port"].as_u64().expect("a port") as u16,
        ldaps_port: info["ldaps_port"].as_u64().expect("a port") as u16,
        ca: PathBuf::from(text("ca")),
        other_ca: PathBuf::from(text("other_ca")),
        people: text("people"),
        log: PathBuf::from(text("log")),
        object: info["ldap_object"].clone(),
        control: Mutex::new(Control {
            stdin,
            stdout,
            _child: child,
        }),
    }
}

fn read_json(stdout: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut line = String::new();
    match stdout.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(serde_json::from_str(&line).expect("the harness answers in JSON")),
    }
}

impl Slapd {
    fn command(&self, command: &str) -> Value {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(control.stdin, "{command}").expect("the harness reads commands");
        control.stdin.flush().expect("the harness reads commands");
        read_json(&mut control.stdout).expect("the harness answers")
    }

    /// A proxy to slapd that holds back what clients send by `delay`.
    pub fn proxy(&self, delay: Duration) -> u16 {
        self.command(&format!("proxy {}", delay.as_secs_f64()))["port"]
            .as_u64()
            .expect("a port") as u16
    }

    pub fn proxy_stats(&self, port: u16) -> ProxyStats {
        let stats = self.command(&format!("stats {port}"));
        let count = |key: &str| stats[key].as_u64().expect("a count");
        ProxyStats {
            accepted: count("accepted"),
            open: count("open"),
            max_open: count("max_open"),
        }
    }

    /// A port that accepts connections and never answers.
    pub fn blackhole(&self) -> u16 {
        self.command("blackhole")["port"].as_u64().expect("a port") as u16
    }

    /// The harness's LDAP object for this directory, with `edit` applied (attributes by
    /// their Amlen names; `null` removes one), parsed as the broker parses it.
    pub fn ldap_object(&self, edit: impl FnOnce(&mut Value)) -> ironsight_config::ldap::Ldap {
        let mut ldap = self.object.clone();
        edit(&mut ldap);
        let mut doc: Value = serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
        doc["LDAP"] = ldap;
        let config = ironsight_config::Config::parse(&doc.to_string())
            .unwrap_or_else(|e| panic!("the test's LDAP object is refused: {e}"));
        config.ldap.expect("an LDAP object")
    }

    /// How many lines of slapd's log contain `needle` (compared without case).
    pub fn log_lines_with(&self, needle: &str) -> usize {
        let needle = needle.to_lowercase();
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.to_lowercase().contains(&needle))
            .count()
    }

    /// How many BIND requests for `dn` slapd has logged: a request's line ends with its
    /// method (a successful one has a second line, with its mechanism).
    pub fn binds(&self, dn: &str) -> usize {
        self.log_lines_with(&format!("BIND dn=\"{dn}\" method="))
    }

    /// Waits (at most 10 s) until slapd's log has more than `before` lines with `needle`:
    /// the log is written in order, so everything slapd logged before that is there too.
    pub fn wait_log(&self, needle: &str, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log_lines_with(needle) <= before {
            assert!(Instant::now() < deadline, "slapd never logged {needle:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
