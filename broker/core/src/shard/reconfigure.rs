//! A new configuration taken up by a running shard ([`Shard::reconfigure`]): new settings for
//! every later decision, and the connections already there judged again where what judged
//! them changed.
//!
//! What happens to a connection:
//! - On an endpoint disabled or removed: closed, a v5 client told 0x8B (Server shutting down:
//!   the part of the server it talks to stops). Its will stands, as for any connection the
//!   server ends.
//! - Connected, on an endpoint whose policies changed: admitted again as its CONNECT was
//!   ([`Shard::admission`]: a ConnectionPolicy must admit it, allow its durable session and
//!   its QoS 1/2 will, and a TopicPolicy must allow its will's topic). A client no longer
//!   admitted is disconnected, v5 with 0x87 (Not authorized), v3 by closing the socket; its
//!   will is not published (it was granted by the admission the client lost) and its session
//!   is kept to its expiry, as for any connection the server ends. (MQTT 5's 0x8A, Banned,
//!   exists only in CONNACK; a refused reconnect gets 0x87, as any refused CONNECT.)
//! - A client still admitted stays connected and loses nothing it may still have: the new
//!   admission's limits replace the old (AllowPersistentMessages, the session expiry cap,
//!   which lowers an expiry above it, and MaxMessages with its behaviour, which apply to
//!   messages queued from now on), its subscriptions no longer allowed are removed without a
//!   word to it (MQTT has no way to tell a client that a subscription ended), and what its
//!   session holds on topics it may no longer receive is dropped, as when a session resumes.
//! - Anything not yet connected (waiting for its CONNECT or its authentication) is judged by
//!   the new settings when its CONNECT is, and a disconnected session when it resumes.
//!
//! Limits a client was told in its CONNACK (Receive Maximum, Topic Alias Maximum:
//! [`crate::conn::Granted`]) hold for its connection; `MaxMessageSize` is enforced at once on
//! every connection of the endpoint. Nothing is cached per connection that a policy decided,
//! so later publishes and subscribes are simply decided by the new policies.

use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::ReasonCode;

use super::authorize::subject_of;
use super::Shard;
use crate::conn::{ConnId, ConnState};
use crate::settings::Settings;

/// Clients disconnected or subscriptions removed that one reconfiguration logs one by one;
/// the rest are counted in [`Reconfigured`]. A policy that revokes a million clients must not
/// have the shard write a million lines while its other clients wait.
pub const RECHECK_LOGGED_MAX: usize = 20;

/// What a new configuration did to a shard's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Connected clients judged again (those on endpoints whose policies changed).
    pub checked: usize,
    /// Of those, the ones no longer admitted, disconnected.
    pub revoked: usize,
    /// Subscriptions removed from clients still admitted.
    pub subscriptions_removed: usize,
    /// Messages dropped from their sessions with them.
    pub messages_dropped: usize,
    /// Connections closed with their endpoint.
    pub closed: usize,
}

impl Reconfigured {
    fn logged(&self) -> usize {
        self.revoked + self.subscriptions_removed
    }
}

impl Shard {
    /// Takes up new settings (the configuration changed while the broker runs) and judges the
    /// connections already here again, as this module's note says. Endpoints keep their
    /// numbers: `settings` lists at least the endpoints the current settings do.
    pub fn reconfigure(&mut self, now: Instant, settings: Arc<Settings>) -> Reconfigured {
        assert!(
            settings.endpoints.len() >= self.settings.endpoints.len(),
            "endpoint numbers are never dropped"
        );
        let old = std::mem::replace(&mut self.settings, settings);
        let changed: Vec<bool> = self
            .settings
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, new)| !old.endpoints.get(i).is_some_and(|o| o.same_policies(new)))
            .collect();
        let newly_disabled = self
            .settings
            .endpoints
            .iter()
            .enumerate()
            .any(|(i, new)| !new.enabled && old.endpoints.get(i).is_some_and(|o| o.enabled));
        if !newly_disabled && !changed.contains(&true) {
            // New TLS files, broker limits: nothing to judge again, and no connection to visit
            // (a broker holding a million of them reloads its certificates at no cost here).
            return Reconfigured::default();
        }
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(id, _)| id as ConnId)
            .collect();
        let mut done = Reconfigured::default();
        for conn in open {
            let c = &self.conns[conn as usize];
            let endpoint = usize::from(c.endpoint);
            if !self.settings.endpoints[endpoint].enabled {
                tracing::debug!(conn, "endpoint disabled: connection closed");
                self.end(conn, now, ReasonCode::ServerShuttingDown, None);
                done.closed += 1;
            } else if c.state == ConnState::Connected && changed[endpoint] {
                done.checked += 1;
                self.requalify(conn, now, &mut done);
            }
        }
        self.stats.connections_revoked += done.revoked as u64;
        done
    }

    /// A connected client judged again under new policies: disconnected when no longer
    /// admitted, otherwise given the new admission's limits and stripped of what it may no
    /// longer receive.
    fn requalify(&mut self, conn: ConnId, now: Instant, done: &mut Reconfigured) {
        let c = &self.conns[conn as usize];
        let session = c.session.expect("a connected connection has a session");
        let s = &self.sessions[session as usize];
        let subject = subject_of(c, &s.client_id, s.principal.as_deref());
        let will = s.will.as_ref().map(|w| (&*w.topic, w.qos));
        let admitted = self.admission(conn, &subject, s.expiry_s > 0, will);
        let log = done.logged() < RECHECK_LOGGED_MAX;
        let admission = match admitted {
            Ok(admission) => admission,
            Err(cause) => {
                if log {
                    tracing::info!(conn, peer = %c.peer, client_id = %s.client_id, cause, "connection closed: no longer allowed by the policies in force");
                }
                done.revoked += 1;
                self.sessions[session as usize].will = None;
                self.end(conn, now, ReasonCode::NotAuthorized, None);
                return;
            }
        };
        let c = &mut self.conns[conn as usize];
        c.allow_persistent = admission.allow_persistent;
        c.session_expiry_max_s = admission.session_expiry_max_s;
        let s = &mut self.sessions[session as usize];
        let expiry_s = s.expiry_s.min(admission.session_expiry_max_s);
        let journaled = (expiry_s, admission.queue_max, admission.queue_behavior);
        if journaled != (s.expiry_s, s.queue_max, s.queue_behavior) {
            (s.expiry_s, s.queue_max, s.queue_behavior) = journaled;
            self.journal_session(session);
        }
        let (removed, dropped) = self.recheck_session(conn, session, now);
        for filter in removed
            .iter()
            .take(RECHECK_LOGGED_MAX.saturating_sub(done.logged()))
        {
            let client_id = &self.sessions[session as usize].client_id;
            tracing::info!(conn, %client_id, %filter, "subscription removed: no longer allowed by the policies in force");
        }
        done.subscriptions_removed += removed.len();
        done.messages_dropped += dropped;
    }
}
