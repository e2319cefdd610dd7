//! What a connection storm costs the users file, in CPU time (the machine is shared, so wall
//! time is noise): one password check at the default cost; a storm of first logins, each of
//! which hashes; the same storm again, answered from the cache. Beside it, the baseline: the
//! check Mosquitto 2.0 runs for each CONNECT against its `password_file` (`$7$`, PBKDF2 with
//! HMAC-SHA512 and 101 iterations, no cache), timed with the same library.
//!
//! ```text
//! cargo run --release -p ironsight-auth --example users_storm [USERS]
//! ```

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::pbkdf2;
use ironsight_auth::{scram, Directory, UserRegistry};
use ironsight_config::Config;
use nix::sys::resource::{getrusage, UsageWho};

/// Password checks timed one after another.
const CHECKS: u32 = 500;

/// The side runtime's worker threads (as `service::WORKER_THREADS`).
const WORKER_THREADS: usize = 2;

/// User and system CPU time of the whole process, every thread included.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage works");
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
}

/// CPU time per round of `work`, run `rounds` times.
fn per_round(rounds: u32, mut work: impl FnMut()) -> Duration {
    let start = cpu_time();
    for _ in 0..rounds {
        work();
    }
    (cpu_time() - start) / rounds
}

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("USERS is a number"))
        .unwrap_or(2_000);

    let verifier = scram::hash_password(b"pencil", scram::ITERATIONS_DEFAULT).unwrap();
    let check = per_round(CHECKS, || {
        assert!(scram::verify_password(&verifier, b"pencil"))
    });
    println!(
        "one check, SCRAM-SHA-256 at {} iterations: {:.0} us CPU",
        scram::ITERATIONS_DEFAULT,
        check.as_secs_f64() * 1e6
    );
    let mosquitto_iterations = NonZeroU32::new(101).unwrap();
    let mut out = [0; 64];
    let baseline = per_round(CHECKS, || {
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            mosquitto_iterations,
            b"0123456789abcdef",
            b"pencil",
            &mut out,
        )
    });
    println!(
        "one check, Mosquitto 2.0's $7$ (PBKDF2-HMAC-SHA512, 101 iterations): {:.0} us CPU",
        baseline.as_secs_f64() * 1e6
    );

    let mut doc: serde_json::Value =
        serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
    let password = verifier.to_string();
    doc["MessagingUser"] = (0..users)
        .map(|i| (name(i), serde_json::json!({ "Password": password })))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let config = Config::parse(&doc.to_string()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .build()
        .unwrap();
    let registry = Arc::new(UserRegistry::from_config(&config));
    storm(
        &runtime,
        &registry,
        "first logins (cache empty)",
        users,
        name,
    );
    storm(
        &runtime,
        &registry,
        "returning users (cache warm)",
        users,
        name,
    );
    // A fleet that shares one user name and password, as many IoT deployments do.
    let registry = Arc::new(UserRegistry::from_config(&config));
    storm(
        &runtime,
        &registry,
        "first logins of one shared user",
        users,
        |_| name(0),
    );
}

fn name(i: usize) -> String {
    format!("user{i}")
}

/// `connects` CONNECTs at once, the i-th as user `user(i)`, on a runtime like the side
/// runtime; prints their CPU time, rate and the hashes they ran.
fn storm(
    runtime: &tokio::runtime::Runtime,
    registry: &Arc<UserRegistry>,
    what: &str,
    connects: usize,
    user: fn(usize) -> String,
) {
    let (cpu, wall, hashes) = (cpu_time(), Instant::now(), registry.hashes_run());
    runtime.block_on(async {
        let tasks: Vec<_> = (0..connects)
            .map(|i| {
                let registry = registry.clone();
                tokio::spawn(async move {
                    assert!(registry.verify(&user(i), b"pencil").await.is_ok());
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    println!(
        "storm of {connects} {what}: {:.1} us CPU per CONNECT, {:.0} CONNECTs/s, {} hashes",
        cpu.as_secs_f64() * 1e6 / connects as f64,
        connects as f64 / wall.as_secs_f64(),
        registry.hashes_run() - hashes
    );
}
