//! Work done on the shard's tick rather than per event: keep alive, CONNECT timeout, will delay,
//! session expiry, the start of a round of disconnected-client notification. The server calls [`Shard::tick`] about once a second; time is passed in, so
//! tests drive expiry without sleeping.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use ironsight_codec::ReasonCode;

use super::lifecycle::CloseKind;
use super::{Shard, Timer};
use crate::conn::{ConnId, ConnState, Connection};

/// Why a connection is cut on a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Late {
    /// No CONNECT within `connect_timeout_s` of the accept.
    Connect,
    /// No verdict on the CONNECT within `authentication_timeout_s` (and a tick): the auth
    /// service answers in time itself, so this only catches a verdict that got lost.
    Authentication,
    /// [MQTT-3.1.2-22] no packet for one and a half times the keep alive.
    KeepAlive,
    /// A packet began more than `packet_timeout_s` ago and is still not whole.
    Packet,
}

struct Deadlines {
    connect: Duration,
    authentication: Duration,
    packet: Duration,
}

impl Deadlines {
    fn late(&self, c: &Connection, now: Instant) -> Option<Late> {
        let since = |at: Instant| now.saturating_duration_since(at);
        match c.state {
            ConnState::AwaitingConnect => {
                (since(c.last_packet_at) > self.connect).then_some(Late::Connect)
            }
            ConnState::Authenticating => {
                (since(c.last_packet_at) > self.authentication).then_some(Late::Authentication)
            }
            ConnState::Connected => {
                let grace = Duration::from_millis(u64::from(c.keepalive_s) * 1500);
                if c.keepalive_s > 0 && since(c.last_packet_at) > grace {
                    return Some(Late::KeepAlive);
                }
                // Input held while a SUBSCRIBE of the connection is in progress is not the
                // client's delay.
                let started = c.inbuf.since().filter(|_| !c.paused);
                started
                    .is_some_and(|at| since(at) > self.packet)
                    .then_some(Late::Packet)
            }
            ConnState::HandedOff | ConnState::Closing => None,
        }
    }
}

impl Shard {
    pub fn tick(&mut self, now: Instant) {
        self.check_connections(now);
        self.fire_session_timers(now);
        self.retained.forget_cleared(now);
        self.notification_tick(now);
        // A shard that routes nothing still empties its inbox, which subscription churn elsewhere
        // would otherwise grow without bound.
        self.catch_up_interest();
    }

    fn check_connections(&mut self, now: Instant) {
        let broker = &self.settings.broker;
        let limits = Deadlines {
            connect: Duration::from_secs(u64::from(broker.connect_timeout_s)),
            authentication: Duration::from_secs(u64::from(broker.authentication_timeout_s) + 1),
            packet: Duration::from_secs(u64::from(broker.packet_timeout_s)),
        };
        let late: Vec<(ConnId, Late)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| limits.late(c, now).map(|late| (id as ConnId, late)))
            .collect();
        for (conn, late) in late {
            match late {
                Late::Connect => {
                    tracing::debug!(conn, "no CONNECT in time");
                    self.refused(conn, None, super::RefusedFor::NoConnect);
                    self.close(conn, now, CloseKind::ServerInitiated);
                }
                Late::Authentication => {
                    tracing::warn!(conn, "no authentication verdict in time");
                    self.stats.authentications_refused += 1;
                    let client_id = self.authenticating.get(&conn).map(|p| p.client_id.clone());
                    let cause = "no authentication verdict in time";
                    self.refuse(
                        conn,
                        now,
                        ReasonCode::ServerUnavailable,
                        cause,
                        client_id.as_deref(),
                    );
                }
                Late::KeepAlive => {
                    tracing::debug!(conn, "keep alive expired");
                    self.fail(conn, now, ReasonCode::KeepAliveTimeout);
                }
                Late::Packet => {
                    tracing::debug!(conn, "packet not whole within Broker.PacketTimeout");
                    self.stats.packets_timed_out += 1;
                    // No packet arrived in time, as with a keep alive: the same reason. 0x81
                    // (Malformed) would blame bytes the broker never saw whole.
                    self.disconnect(conn, now, ReasonCode::KeepAliveTimeout);
                }
            }
        }
    }

    /// Timers of sessions that reconnected or moved a deadline are skipped when they fire; a
    /// client that reconnects in a loop with a long expiry would pile them up until then, so
    /// past two per session (plus some slack) the heap keeps only the live ones.
    pub(super) fn push_timer(&mut self, timer: Timer) {
        self.timers.push(Reverse(timer));
        if self.timers.len() > 2 * self.sessions.len() + 1024 {
            let sessions = &self.sessions;
            let mut live = std::mem::take(&mut self.timers).into_vec();
            live.retain(|Reverse(t)| {
                sessions.get(t.session as usize).is_some_and(|s| {
                    let will_at = s.will.as_ref().and_then(|w| w.publish_at);
                    s.generation == t.generation
                        && s.conn.is_none()
                        && (s.expires_at == Some(t.at) || will_at == Some(t.at))
                })
            });
            live.sort_unstable();
            live.dedup(); // the same deadline set twice
            self.timers = live.into();
        }
    }

    fn fire_session_timers(&mut self, now: Instant) {
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.at > now {
                break;
            }
            self.timers.pop();
            let Some(s) = self.sessions.get_mut(timer.session as usize) else {
                continue;
            };
            if s.generation != timer.generation || s.conn.is_some() {
                continue; // the session is gone or reconnected: the timer is stale
            }
            if s.will
                .as_ref()
                .is_some_and(|w| w.publish_at.is_some_and(|at| at <= now))
            {
                if let Some(will) = s.will.take() {
                    self.publish_will(timer.session, *will, now);
                }
            }
            let s = &self.sessions[timer.session as usize];
            if s.expires_at.is_some_and(|at| at <= now) {
                tracing::debug!(client_id = %s.client_id, "session expired");
                self.stats.sessions_expired += 1;
                self.end_session(timer.session, now);
            }
        }
    }
}
