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
//! Verifications run one after another on a two-thread runtime, as on the auth service.

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

/// Times `runs` verifications of alice, each on `d()`.
async fn measure(name: &str, runs: usize, mut d: impl FnMut() -> std::rc::Rc<LdapDirectory>) {
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
    times.sort_unstable();
    let at = |q: f64| times[((runs as f64 * q) as usize).min(runs - 1)];
    let mean = times.iter().sum::<Duration>() / runs as u32;
    println!(
        "{name:>7}: {runs:>6} runs  mean {:>8.1} µs  p50 {:>8.1} µs  p99 {:>8.1} µs",
        mean.as_secs_f64() * 1e6,
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        measure("cold", 200, || std::rc::Rc::new(directory(|_| {}))).await;
        let known = std::rc::Rc::new(directory(|l| l["EnableCache"] = false.into()));
        known.verify("alice", b"alice-pw").await.unwrap(); // caches the DN and groups
        measure("known", 2000, || known.clone()).await;
        let cached = std::rc::Rc::new(directory(|_| {}));
        cached.verify("alice", b"alice-pw").await.unwrap(); // proves the password
        measure("cached", 100_000, || cached.clone()).await;
    });
}
