//! The control plane beside the shards: MessageSight's REST administration API (Amlen's
//! `/ima/v1/...`), its monitoring, and Prometheus's `/metrics`, on a small tokio runtime of
//! its own that never touches the message path.
//!
//! # Layout
//! - [`server`]: the AdminEndpoint's socket (HTTP/1.1, HTTPS with its SecurityProfile), the
//!   runtime, the routes and their bounds.
//! - [`api`]: the state every request shares; [`Apply`], the seam through which a new
//!   configuration reaches the running broker.
//! - [`access`]: HTTP basic authentication of the administrator, and ConfigurationPolicies.
//! - [`configuration`]: `/ima/v1/configuration`: read, change, delete objects.
//! - [`persist`]: the configuration file written atomically; `--set-admin-password`.
//! - [`service`]: `/ima/v1/service`: status, stop, restart, close connections, delete sessions.
//! - [`monitor`]: `/ima/v1/monitor/<Object>`: Amlen's monitoring objects.
//! - [`metrics`]: `/metrics` in Prometheus's text format.
//! - [`dashboard`]: the web dashboard's page and scripts, compiled in, served at `/dashboard/`.
//! - [`shards`]: [`Shards`], the API's link to the shards: snapshots and requests.
//! - [`system`]: the process's and machine's figures from /proc; times as Amlen writes them.
//! - [`error`]: refusals in Amlen's shape, with their codes.
//!
//! # Invariants
//! - The API never waits on a shard's lock and no shard waits on the API: shards publish
//!   snapshots on their tick and take requests from an inbox; the API waits for answers with a
//!   timeout ([`shards::ANSWER_TIMEOUT`]).
//! - A refused request changes nothing: a configuration change is checked whole before the
//!   file is written, and the file is written before the broker is told.

pub mod access;
pub mod api;
pub mod configuration;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod monitor;
pub mod persist;
pub mod server;
pub mod service;
pub mod shards;
pub mod system;

use std::path::PathBuf;
use std::sync::Arc;

use ironsight_config::{document, Config};

pub use api::{Apply, ApplyOutcome};
pub use persist::set_admin_password;
pub use server::Running;
pub use shards::Shards;

/// What the admin endpoint starts from.
pub struct Options {
    pub config: Arc<Config>,
    /// The configuration file, where changes are kept; `None` for the built-in configuration.
    pub path: Option<PathBuf>,
    /// The AdminEndpoint's SecurityProfile's TLS settings (the server builds them, as for the
    /// MQTT endpoints); `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub apply: Arc<dyn Apply>,
    pub shards: Arc<dyn Shards>,
}

/// Starts the admin endpoint, when the configuration has one enabled. Says at start how to set
/// the administrator's password when none is set.
pub fn start(options: Options) -> Result<Option<Running>, String> {
    let Some(endpoint) = options.config.admin.endpoint.clone().filter(|e| e.enabled) else {
        tracing::info!("no enabled AdminEndpoint: the REST API is off");
        return Ok(None);
    };
    let doc = match &options.path {
        Some(path) => persist::read(path)?.0,
        None => document::as_document(&options.config),
    };
    let api = Arc::new(api::Api::new(
        options.config.clone(),
        doc,
        options.path,
        options.apply,
        options.shards,
    ));
    let running = server::start(api.clone(), endpoint.addr(), options.tls)?;
    let scheme = if endpoint.security_profile.is_empty() {
        "http"
    } else {
        "https"
    };
    tracing::info!(addr = %running.addr, scheme, "admin endpoint listening");
    if options.config.admin.password.is_none() {
        let message = format!(
            "the admin endpoint refuses every request until the administrator \"{}\" has a password: {}",
            options.config.admin.user_id,
            api.how_to_set_password()
        );
        tracing::warn!("{message}");
        eprintln!("ironsight: {message}");
    }
    Ok(Some(running))
}
