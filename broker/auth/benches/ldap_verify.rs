//! How long one LDAP verification takes against the real slapd of
//! `tests/integration/slapd.py` on loopback, in three states:
//! - cold: a new `LdapDirectory` (nothing cached, no connection): two connections, a bind as
//!   BindDN, the user search, the user bind, the group search;
//! - known: the DN and groups cached, the password not (EnableCache false): one bind on a
//!   pooled connection;
//! - cached: the password proved within CacheTimeout: no directory at all.
//!
//!     cargo bench -p ironsight-auth --bench ldap_verify
//!
//! Verifications run one after another on a two-thread runtime, as on the auth service. Each
//! state also shows the CPU time per verification of this process (the broker's side) and of
//! slapd, from /proc (clock ticks: coarse, but over many runs).

// The tests' slapd driver; the bench needs only the directory, not the proxies.
#[allow(dead_code)]
#[path = "../tests/slapd/mod.rs"]
mod slapd;

use std::path::Path;
use std::time::{Duration, Instant};

use ironsight_auth::ldap::LdapDirectory;
use ironsight_auth::Directory;
use serde_json::Value;

fn directory(edit: impl FnOnce(&mut Value)) -> LdapDirectory {
    LdapDirectory::new(&slapd::slapd().ldap_object(edit), Path::new(".")).unwrap()
}

/// CPU seconds (user and system) a process has used so far, from /proc/<pid>/stat.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc is mounted");
    // Fields after the command name (which is in parentheses and may hold spaces): utime and
    // stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Times `runs` verifications of alice, each on `d()`.
async fn measure(name: &str, runs: usize, mut d: impl FnMut() -> std::rc::Rc<LdapDirectory>) {
    let slapd_pid = slapd::slapd().pid.to_string();
    let (own_before, slapd_before) = (cpu_seconds("self"), cpu_seconds(&slapd_pid));
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let directory = d();
        let started = Instant::now();
        directory
            .verify("alice", b"alice-pw")
            .await
            .expect("alice authenticates");
        times.push(started.elapsed());
    }
    let own = (cpu_seconds("self") - own_before) / runs as f64;
    let directory = (cpu_seconds(&slapd_pid) - slapd_before) / runs as f64;
    times.sort_unstable();
    let at = |q: f64| times[((runs as f64 * q) as usize).min(runs - 1)];
    let mean = times.iter().sum::<Duration>() / runs as u32;
    println!(
        "{name:>7}: {runs:>6} runs  mean {:>7.1} µs  p50 {:>7.1} µs  p99 {:>7.1} µs  \
         cpu/verification: ours {:>6.1} µs, slapd {:>6.1} µs",
        mean.as_secs_f64() * 1e6,
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        own * 1e6,
        directory * 1e6,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Made beforehand, so that the figures hold the verification only.
        let mut cold: Vec<_> = (0..200)
            .map(|_| std::rc::Rc::new(directory(|_| {})))
            .collect();
        measure("cold", 200, || cold.pop().expect("one per run")).await;
        let known = std::rc::Rc::new(directory(|l| l["EnableCache"] = false.into()));
        known.verify("alice", b"alice-pw").await.unwrap(); // caches the DN and groups
        measure("known", 2000, || known.clone()).await;
        let cached = std::rc::Rc::new(directory(|_| {}));
        cached.verify("alice", b"alice-pw").await.unwrap(); // proves the password
        measure("cached", 100_000, || cached.clone()).await;
    });
}
