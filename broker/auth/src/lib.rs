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
//!   [`check::Directory`] judges user names and passwords.
//! - [`ldap`]: an LDAP directory as a `Directory` (Amlen's LDAP object).
//!
//! # Invariants
//! - Every request gets one [`Answer`], [`Refusal::Unavailable`] when its check overran
//!   the timeout: a shard's count of pending authentications always comes back down.
//! - Passwords and tokens are never logged.
//!
//! [`Refusal::Unavailable`]: ironsight_core::auth::Refusal::Unavailable

pub mod check;
pub mod ldap;
pub mod service;

pub use check::{Checker, Directory};
pub use service::{Answer, AuthService};
