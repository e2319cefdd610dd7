//! MQTT 5 enhanced authentication (§4.12) with SCRAM-SHA-256 against the users file, so that
//! a password never crosses the wire, not even inside TLS.
//!
//! The exchange takes two rounds of the core's authenticating state:
//! - step 0, the CONNECT: Authentication Method `SCRAM-SHA-256`, Authentication Data the
//!   client-first message. The answer is "continue" with the server-first message (salt,
//!   iterations, nonce), which the core sends in AUTH 0x18; the exchange is kept in
//!   [`Conversations`] until the client answers.
//! - step 1, the client's AUTH: the client-final message with its proof. The answer is the
//!   verdict, and on success the server-final message, which the CONNACK carries and which
//!   proves to the client that the server knows its verifier.
//!
//! Only endpoints that check user names and passwords against the users file offer it: LDAP
//! binds with the password itself, and a token is not a password.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ironsight_core::auth::{AuthAnswer, AuthRequest, Refusal};

use crate::conversations::{Conversations, Full};
use crate::scram::{ScramServer, MECHANISM};
use crate::users::UserRegistry;

/// Exchanges open at once, over all shards: each holds a few hundred bytes until its client
/// answers or its deadline passes. The default `MaxPendingAuthentications` of one shard.
const EXCHANGES_MAX: usize = 10_000;

pub struct Enhanced {
    users: Arc<UserRegistry>,
    open: Conversations<ScramServer>,
}

impl Enhanced {
    /// SCRAM against `users`; an exchange whose client does not answer within `timeout` is
    /// forgotten.
    pub fn new(users: Arc<UserRegistry>, timeout: Duration) -> Enhanced {
        Enhanced {
            users,
            open: Conversations::new(EXCHANGES_MAX, timeout),
        }
    }

    /// One round of `request`'s exchange, which names an Authentication Method.
    pub fn step(&self, request: &AuthRequest, now: Instant) -> AuthAnswer {
        if request.method.as_deref() != Some(MECHANISM) {
            tracing::debug!(conn = request.conn, method = ?request.method, "authentication method not offered");
            return Err(Refusal::BadMethod).into();
        }
        let id = (request.shard, request.conn, request.ticket);
        let data = request.data.as_deref().unwrap_or_default();
        match request.step {
            0 => self.first(request, id, data, now),
            1 => self.last(request, id, data, now),
            step => {
                tracing::debug!(conn = request.conn, step, "SCRAM takes two rounds");
                Err(Refusal::BadCredentials).into()
            }
        }
    }

    /// The client-first message: answered with the server-first one. A CONNECT that also
    /// names a user must name the one it authenticates as.
    fn first(
        &self,
        request: &AuthRequest,
        id: crate::conversations::ExchangeId,
        data: &[u8],
        now: Instant,
    ) -> AuthAnswer {
        let (server, server_first) = match ScramServer::start(data, |u| self.users.verifier(u)) {
            Ok(started) => started,
            Err(error) => {
                tracing::debug!(conn = request.conn, %error, "SCRAM client-first refused");
                return Err(Refusal::BadCredentials).into();
            }
        };
        if let Some(name) = request.user_name.as_deref() {
            if name != server.user() {
                tracing::debug!(
                    conn = request.conn,
                    "CONNECT user name and SCRAM user differ"
                );
                return Err(Refusal::BadCredentials).into();
            }
        }
        match self.open.keep(id, server, now) {
            Ok(()) => AuthAnswer::Continue(Bytes::from(server_first)),
            Err(Full) => {
                tracing::warn!(conn = request.conn, "too many SCRAM exchanges open");
                Err(Refusal::Unavailable).into()
            }
        }
    }

    /// The client-final message: the verdict, with the server-final message on success.
    fn last(
        &self,
        request: &AuthRequest,
        id: crate::conversations::ExchangeId,
        data: &[u8],
        now: Instant,
    ) -> AuthAnswer {
        let Some(server) = self.open.take(id, now) else {
            tracing::debug!(conn = request.conn, "SCRAM exchange unknown or expired");
            return Err(Refusal::Unavailable).into();
        };
        match server.finish(data) {
            Ok((user, server_final)) => match self.users.principal(&user) {
                Some(principal) => AuthAnswer::Done {
                    verdict: Ok(principal),
                    data: Some(Bytes::from(server_final)),
                },
                // Removed from the users file during the exchange.
                None => Err(Refusal::BadCredentials).into(),
            },
            Err(error) => {
                tracing::info!(conn = request.conn, %error, "SCRAM authentication refused");
                Err(Refusal::BadCredentials).into()
            }
        }
    }
}
