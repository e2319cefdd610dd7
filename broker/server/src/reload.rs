//! SIGHUP reads the configuration file again and applies it to the running broker
//! ([`LiveConfig::apply`], as a change through the REST API is), with every file it names:
//! certificates, keys, trusted CAs, revocation lists, and the JWTProfiles' key sets
//! (`ironsight_auth::TokenProfiles::reload`: a key set that fails to load keeps the old one).
//! Without `--config` the built-in configuration is applied again, which changes nothing but
//! the files. A revocation list whose file changed (looked at every UpdateInterval minutes)
//! has the TLS contexts rebuilt the same way.
//!
//! A file that does not parse, or a change that cannot be applied (a key that does not fit its
//! certificate, a port taken), changes nothing and is logged with the object and attribute
//! at fault. The reloader is a plain thread beside the shards, woken by the signal itself;
//! shards take the result up on their stop-poll tick, never on the message path.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ironsight_auth::TokenProfiles;
use ironsight_config::Config;

use crate::live_config::LiveConfig;

/// How long the reloader waits for a signal before it looks at the stop flag and the
/// revocation lists' clocks.
const POLL: Duration = Duration::from_millis(200);

/// Starts the reloader thread; it ends when `stop` is set.
pub fn start(
    live: Arc<LiveConfig>,
    path: Option<PathBuf>,
    tokens: TokenProfiles,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    // The signal handler writes a byte into `signals`: the thread wakes at once, instead of
    // at its next poll, so that a reload's time is the reload's.
    let (mut hangups, signals) =
        UnixStream::pair().map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    hangups
        .set_read_timeout(Some(POLL))
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, signals)
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    std::thread::Builder::new()
        .name("ironsight-reload".into())
        .spawn(move || {
            let reloader = Reloader { live, path, tokens };
            // The configuration in force, as last seen: the revocation lists it names.
            let mut running = reloader.live.running();
            let mut crls = CrlWatch::new(&running);
            let mut byte = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                let signalled = matches!(hangups.read(&mut byte), Ok(n) if n > 0);
                if signalled {
                    reloader.hangup();
                } else if crls.changed(&running, Instant::now()) {
                    reloader.apply(&running);
                } else {
                    continue;
                }
                running = reloader.live.running();
                crls = CrlWatch::new(&running);
            }
        })
        .map_err(|e| format!("cannot start the reloader: {e}"))?;
    Ok(())
}

struct Reloader {
    live: Arc<LiveConfig>,
    path: Option<PathBuf>,
    tokens: TokenProfiles,
}

impl Reloader {
    fn hangup(&self) {
        let config = match &self.path {
            Some(path) => {
                tracing::info!(file = %path.display(), "SIGHUP: reading the configuration file and the files it names again");
                Config::load(path)
            }
            None => {
                tracing::info!("SIGHUP: no --config file; applying the built-in configuration again, which changes nothing but reads the TLS files again");
                Ok(Config::builtin())
            }
        };
        for error in self.tokens.reload() {
            tracing::error!(%error, "key set not reloaded; the old one stays");
        }
        match config {
            Ok(config) => self.apply(&config),
            Err(error) => {
                tracing::error!(%error, "configuration reload refused; nothing changed")
            }
        }
    }

    fn apply(&self, config: &Config) {
        if let Err(error) = self.live.apply(config) {
            tracing::error!(%error, "configuration reload refused; nothing changed");
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
            let Some(p) = config.crl_profiles.get(name) else {
                continue;
            };
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
