//! The API's state, shared by every request: the running configuration (as checked and as the
//! file's document), who may do what, the link to the shards and to whoever applies a new
//! configuration to the running broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use axum::http::HeaderMap;
use ironsight_config::admin::Action;
use ironsight_config::Config;
use serde_json::{Map, Value};

use crate::access::Access;
use crate::error::Refusal;
use crate::persist;
use crate::shards::Shards;

/// Applies a new configuration to the running broker: the seam between the API, which checks
/// and writes a change, and the server, which knows what can change live.
pub trait Apply: Send + Sync + 'static {
    /// Checks what parsing cannot: the files the configuration names (certificates, keys,
    /// CAs), read as a start would read them. Called before anything is written.
    fn check(&self, new: &Config) -> Result<(), ironsight_config::ConfigError> {
        let _ = new;
        Ok(())
    }

    /// Makes `new` the running configuration, as far as it can without a restart; called
    /// once the file holds it. Says which objects took effect and which need a restart
    /// (`Type "Name"`, or `Type` for a singleton, as `document::changed_objects` names them).
    fn apply(&self, new: &Config) -> Result<ApplyOutcome, String>;

    /// Counts the configurations the running broker has taken up, by any path (SIGHUP as well
    /// as the API). When it moves, the API reads the file again: pulled on each request rather
    /// than pushed by whoever applied, so that no request can see the old view once the
    /// change is in force.
    fn generation(&self) -> u64 {
        0
    }
}

/// What [`Apply::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub applied: Vec<String>,
    pub restart_needed: Vec<String>,
}

/// The peer of a request's connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The running configuration as the API holds it.
pub struct Current {
    pub config: Arc<Config>,
    /// The file's document, into which the next change is merged.
    pub doc: Map<String, Value>,
    pub access: Arc<Access>,
}

pub struct Api {
    pub current: RwLock<Current>,
    /// The configuration file; `None` for the built-in configuration, which cannot change.
    pub path: Option<PathBuf>,
    pub apply: Arc<dyn Apply>,
    pub shards: Arc<dyn Shards>,
    /// One configuration change at a time.
    pub changing: tokio::sync::Mutex<()>,
    /// The broker's configuration generation that `current` was read at.
    seen: AtomicU64,
    pub started: Instant,
    pub started_at: SystemTime,
}

impl Api {
    pub fn new(
        config: Arc<Config>,
        doc: Map<String, Value>,
        path: Option<PathBuf>,
        apply: Arc<dyn Apply>,
        shards: Arc<dyn Shards>,
    ) -> Api {
        let access = Arc::new(Access::from_config(&config));
        Api {
            current: RwLock::new(Current {
                config,
                doc,
                access,
            }),
            path,
            seen: AtomicU64::new(apply.generation()),
            apply,
            shards,
            changing: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.read().config.clone()
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.follow_the_broker();
        // Nothing panics while holding it; if something did, the state is still whole
        // (every change replaces whole fields).
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn replace(&self, config: Arc<Config>, doc: Map<String, Value>) {
        let access = Arc::new(Access::from_config(&config));
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Current {
            config,
            doc,
            access,
        };
    }

    /// Reads the file again where the broker took up a configuration since `current` was
    /// read (SIGHUP re-read it): the API shows what runs, starts its next change from the
    /// file's document, and its ConfigurationPolicies and credentials take effect. A change
    /// made through the API moves the generation too; reading back what it just wrote is cheap.
    fn follow_the_broker(&self) {
        let now = self.apply.generation();
        if self.seen.swap(now, Ordering::AcqRel) == now {
            return;
        }
        let Some(path) = &self.path else { return };
        match persist::read(path) {
            Ok((doc, config)) => self.replace(Arc::new(config), doc),
            Err(error) => {
                tracing::error!(%error, "the admin API keeps its view of the configuration")
            }
        }
    }

    /// How an operator sets the administrator's password, for messages.
    pub fn how_to_set_password(&self) -> String {
        let file = self
            .path
            .as_ref()
            .map_or_else(|| "FILE".to_string(), |p| p.display().to_string());
        format!(
            "set one with `ironsight --config {file} --set-admin-password`, which reads it from standard input"
        )
    }

    /// Lets a request for `action` through, or refuses it (401, 403).
    pub async fn allow(
        &self,
        headers: &HeaderMap,
        peer: Peer,
        action: Action,
    ) -> Result<(), Refusal> {
        if !self.read().access.has_password() {
            self.take_new_password();
        }
        let access = self.read().access.clone();
        access
            .check(headers, peer.0.ip(), action, &self.how_to_set_password())
            .await
    }

    /// A broker started before its password was set: `--set-admin-password` wrote it to the
    /// file since. The file's AdminUserID and AdminUserPassword are taken up (nothing else of
    /// it: other changes wait for a reload), so that a fresh install needs no restart.
    fn take_new_password(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let Ok((doc, file)) = persist::read(path) else {
            return;
        };
        if file.admin.password.is_none() {
            return;
        }
        let (mut config, mut kept) = {
            let current = self.read();
            ((*current.config).clone(), current.doc.clone())
        };
        config.admin.user_id = file.admin.user_id;
        config.admin.password = file.admin.password;
        for key in ["AdminUserID", "AdminUserPassword"] {
            match doc.get(key) {
                Some(value) => kept.insert(key.to_string(), value.clone()),
                None => kept.remove(key),
            };
        }
        tracing::info!("the administrator's password was set; the admin endpoint takes requests");
        self.replace(Arc::new(config), kept);
    }
}
