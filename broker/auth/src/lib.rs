//! Authentication beside the shards: who a connecting client is, decided off the message path.
//!
//! A shard never waits for a password hash or a directory: it hands each CONNECT that its
//! endpoint's SecurityProfile wants checked to the [`AuthService`], a small tokio runtime of
//! its own, and goes on with its other clients. The service answers every request exactly
//! once, within `Broker.AuthenticationTimeout`, through the callback the server gave it.
//!
//! # Layout
//! - [`service`]: the side runtime: requests in from any shard, one answer out per request.
//! - [`check`]: what a request must show on its endpoint (password, certificate), and which
//!   [`check::Directory`] judges user names and passwords, or which [`check::TokenVerifier`]
//!   judges a password that is a token.
//! - [`users`]: the users file (`MessagingUser`, `MessagingGroup`) as a [`Directory`], with
//!   its cache of verified credentials.
//! - [`scram`]: SCRAM-SHA-256: the users file's password hash, and the server side of MQTT 5
//!   enhanced authentication with it. `ironsight-passwd` (src/bin) makes the hashes.
//! - [`enhanced`]: MQTT 5 enhanced authentication: SCRAM-SHA-256 in AUTH rounds, its open
//!   exchanges kept in [`conversations`] between rounds.
//! - [`jwt`]: JWTProfile, JWTs verified against a local JWKS key set.
//! - [`oauth`]: OAuthProfile, access tokens checked by an authorization server over HTTP(S).
//! - [`tokens`]: the token verifiers of a configuration, one per profile, and their reload.
//! - [`ldap`]: an LDAP directory as a `Directory` (Amlen's LDAP object).
//! - [`prompt`]: a password read from standard input, for the commands that hash one.
//!
//! # Invariants
//! - Every request gets one [`Answer`], [`Refusal::Unavailable`] when its check overran
//!   the timeout: a shard's count of pending authentications always comes back down.
//! - Passwords and tokens are never logged.
//!
//! [`Refusal::Unavailable`]: ironsight_core::auth::Refusal::Unavailable

pub mod check;
pub mod conversations;
pub mod enhanced;
pub mod jwt;
pub mod ldap;
pub mod oauth;
pub mod prompt;
pub mod scram;
pub mod service;
pub mod tokens;
pub mod users;

pub use check::{Checker, Directory, TokenVerifier};

use std::sync::Arc;

use ironsight_config::Config;

/// The checks of `config`'s endpoints: passwords against the enabled LDAP directory, or else
/// the users file (which also offers SCRAM-SHA-256 over MQTT 5 AUTH: LDAP binds with the
/// password itself, so it cannot); tokens with `tokens`; certificates by their common name.
pub fn checker(config: &Config, tokens: &TokenProfiles) -> Result<Checker, String> {
    let timeout = std::time::Duration::from_secs(u64::from(config.broker.authentication_timeout));
    if let Some(ldap) = config.ldap.as_ref().filter(|l| l.enabled) {
        let directory = ldap::LdapDirectory::new(ldap, &config.base_dir)?;
        return Ok(Checker::from_config(
            config,
            Some(Arc::new(directory)),
            tokens,
        ));
    }
    let users = Arc::new(UserRegistry::from_config(config));
    let directory: Arc<dyn Directory> = users.clone();
    Ok(Checker::from_config(config, Some(directory), tokens)
        .with_enhanced(enhanced::Enhanced::new(users, timeout)))
}

pub use service::{Answer, AuthService};
pub use tokens::TokenProfiles;
pub use users::UserRegistry;
