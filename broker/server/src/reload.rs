//! Certificates, keys, trusted CAs and revocation lists change while the broker runs: on
//! SIGHUP, and when a CRLProfile's file changes (looked at every UpdateInterval minutes), the
//! TLS contexts are built again from the files and handed to the shards. SIGHUP also reads the
//! JWTProfiles' key sets again (`ironsight_auth::TokenProfiles::reload`): a key set that fails
//! to load keeps the old one. New handshakes use
//! them; established connections keep their keys and stay, except those whose client
//! certificate a new revocation list names, where the CRLProfile asks for RevalidateConnection.
//!
//! A reload that fails (a missing file, a key that does not fit) changes nothing and says why,
//! naming the object and attribute. The reloader is a plain thread beside the shards; a shard
//! looks for a new generation on its stop-poll tick, never on the message path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ironsight_auth::TokenProfiles;
use ironsight_config::Config;

use crate::transport::tls::context;
use crate::transport::EndpointTransport;

/// How often the reloader looks at its flags and clocks.
const POLL: Duration = Duration::from_millis(200);

/// The latest endpoint transports, and a generation that moves when they change.
#[derive(Default)]
pub struct Published {
    generation: AtomicU64,
    endpoints: Mutex<Vec<EndpointTransport>>,
}

impl Published {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The endpoints of the current generation.
    pub fn endpoints(&self) -> Vec<EndpointTransport> {
        self.endpoints
            .lock()
            .expect("never poisoned: no panics hold it")
            .clone()
    }

    fn publish(&self, endpoints: Vec<EndpointTransport>) {
        *self.endpoints.lock().expect("never poisoned") = endpoints;
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Starts the reloader thread; it ends when `stop` is set.
pub fn start(
    config: Arc<Config>,
    tokens: TokenProfiles,
    stop: Arc<AtomicBool>,
) -> Result<Arc<Published>, String> {
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let published = Arc::new(Published::default());
    let theirs = published.clone();
    std::thread::Builder::new()
        .name("ironsight-reload".into())
        .spawn(move || run(&config, &tokens, &theirs, &hangup, &stop))
        .map_err(|e| format!("cannot start the reloader: {e}"))?;
    Ok(published)
}

fn run(
    config: &Config,
    tokens: &TokenProfiles,
    published: &Published,
    hangup: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut crls = CrlWatch::new(config);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        let signalled = hangup.swap(false, Ordering::Relaxed);
        if signalled {
            tracing::info!(
                "SIGHUP: reading certificate, key, CA, revocation list and key set files again"
            );
            for error in tokens.reload() {
                tracing::error!(%error, "key set not reloaded; the old one stays");
            }
        }
        if !signalled && !crls.changed(config, Instant::now()) {
            continue;
        }
        match context::build(config) {
            Ok(contexts) => {
                published.publish(EndpointTransport::all(config, &contexts));
                crls = CrlWatch::new(config);
                tracing::info!(
                    profiles = contexts.len(),
                    "TLS contexts reloaded; shards take them up within 50 ms"
                );
            }
            Err(error) => {
                tracing::error!(%error, "reload refused; the broker keeps its current TLS settings")
            }
        }
    }
}

/// The revocation list files, and when each was last looked at.
struct CrlWatch {
    /// By CRLProfile: the file's modification time when last seen, and when it was checked.
    seen: BTreeMap<String, (Option<SystemTime>, Instant)>,
}

impl CrlWatch {
    fn new(config: &Config) -> CrlWatch {
        let now = Instant::now();
        let seen = config
            .crl_profiles
            .iter()
            .map(|(name, p)| (name.clone(), (modified(config, &p.crl_source), now)))
            .collect();
        CrlWatch { seen }
    }

    /// Whether a revocation list file changed since it was last checked, each file being
    /// checked once per its profile's UpdateInterval.
    fn changed(&mut self, config: &Config, now: Instant) -> bool {
        let mut changed = false;
        for (name, (mtime, checked)) in &mut self.seen {
            let p = &config.crl_profiles[name];
            let interval = Duration::from_secs(u64::from(p.update_interval) * 60);
            if now.duration_since(*checked) < interval {
                continue;
            }
            *checked = now;
            let current = modified(config, &p.crl_source);
            if current != *mtime {
                tracing::info!(crl_profile = %name, "revocation list changed");
                *mtime = current;
                changed = true;
            }
        }
        changed
    }
}

fn modified(config: &Config, file: &str) -> Option<SystemTime> {
    std::fs::metadata(config.file(file))
        .and_then(|m| m.modified())
        .ok()
}
