//! How connections and sessions end: DISCONNECT, lost sockets, takeover, wills, session end,
//! broker shutdown.
//!
//! The will rules ([MQTT-3.1.2-8], [MQTT-3.1.3-9], 3.1.2.5): a will is published when the
//! connection ends without a DISCONNECT 0x00, after the Will Delay Interval or when the session
//! ends, whichever is first; a new connection to the session before then cancels it.

use std::time::{Duration, Instant};

use ironsight_codec::{Disconnect, DisconnectProperties, Packet, ReasonCode};

use super::{Shard, Timer};
use crate::conn::{ConnId, ConnState, InBuf};
use crate::journal::Record;
use crate::message::Message;
use crate::session::{SessionIdx, Will, EXPIRY_NEVER};
use crate::violation::Violation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CloseKind {
    /// DISCONNECT with reason 0x00: the will is discarded.
    Clean,
    /// The socket failed, keep alive ran out, a protocol error, or a DISCONNECT with any other
    /// reason than 0x00 (0x04 asks for the will; error codes leave it too): the will stands.
    Abrupt,
    /// Like `Abrupt`, decided by the server.
    ServerInitiated,
    /// A new connection took the session over: it decides what happens to the session.
    TakenOver,
    /// The broker is stopping: nothing is published, sessions stay until the process exits.
    Shutdown,
}

pub(super) fn disconnect_packet(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect {
        reason_code: reason,
        properties: DisconnectProperties::default(),
    })
}

impl Shard {
    /// Ends a connection: it stops reading, the server writes what is left and closes the
    /// socket. The session is detached at once, so a new connection can take it.
    pub(super) fn close(&mut self, conn: ConnId, now: Instant, kind: CloseKind) {
        let c = &mut self.conns[conn as usize];
        if !c.is_open() {
            return;
        }
        c.state = ConnState::Closing;
        c.inbuf = InBuf::default();
        c.paused = false;
        self.unfinished.remove(&conn);
        self.authenticating.remove(&conn);
        let session = c.session.take();
        self.mark_dirty(conn);
        self.forget_acks(conn);
        if let Some(session) = session {
            self.detach(session, now, kind);
        }
    }

    fn detach(&mut self, session: SessionIdx, now: Instant, kind: CloseKind) {
        let s = &mut self.sessions[session as usize];
        s.conn = None;
        self.reset_arrivals(session);
        let s = &mut self.sessions[session as usize];
        match kind {
            CloseKind::Shutdown => return,
            CloseKind::Clean => {
                s.will.take();
            }
            CloseKind::Abrupt | CloseKind::ServerInitiated | CloseKind::TakenOver => {}
        }
        let s = &mut self.sessions[session as usize];
        let ends = s.expiry_s == 0 && kind != CloseKind::TakenOver;
        let will_now = s.will.as_ref().is_some_and(|w| w.delay_s == 0 || ends);
        if will_now {
            let will = s.will.take().expect("checked above");
            self.publish_will(session, *will, now);
        }
        if kind == CloseKind::TakenOver {
            return;
        }
        if ends {
            self.end_session(session, now);
            return;
        }
        let s = &mut self.sessions[session as usize];
        let expiry =
            (s.expiry_s != EXPIRY_NEVER).then(|| now + Duration::from_secs(u64::from(s.expiry_s)));
        s.expires_at = expiry;
        if let Some(will) = &mut s.will {
            let delay = now + Duration::from_secs(u64::from(will.delay_s));
            will.publish_at = Some(expiry.map_or(delay, |e| e.min(delay)));
        }
        // Disconnected: the expiry (and a will's delay) count from this record's time, also
        // while the broker is down.
        self.journal_session(session);
        let s = &mut self.sessions[session as usize];
        s.shrink();
        let generation = s.generation;
        let will_at = s.will.as_ref().and_then(|w| w.publish_at);
        for at in [s.expires_at, will_at].into_iter().flatten() {
            self.push_timer(Timer {
                at,
                session,
                generation,
            });
        }
    }

    /// The session is over: its will (if still pending) is published, its subscriptions leave
    /// the tries, shared messages it held go to other members, everything else is dropped.
    pub(super) fn end_session(&mut self, session: SessionIdx, now: Instant) {
        let s = &mut self.sessions[session as usize];
        assert!(s.conn.is_none(), "a session ends only without a connection");
        if let Some(will) = s.will.take() {
            self.publish_will(session, *will, now);
        }
        let client_id = &self.sessions[session as usize].client_id;
        self.journal.record(Record::SessionEnded { client_id });
        let subscriptions = std::mem::take(&mut self.sessions[session as usize].subscriptions);
        for sub in subscriptions.iter() {
            self.drop_subscription(session, sub, now);
        }
        self.forget_session(session);
    }

    pub(super) fn publish_will(&mut self, session: SessionIdx, will: Will, now: Instant) {
        let origin = self.sessions[session as usize].uid(self.id);
        tracing::debug!(topic = %will.topic, "publishing will");
        self.journal_session(session); // the will is gone
        let mut msg = Message::new(
            now,
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            will.properties,
            origin,
        );
        msg.id = self.next_message_id();
        msg.publisher = will.publisher;
        self.stats.wills_published += 1;
        self.route(now, std::sync::Arc::new(msg), None);
    }

    /// [MQTT-3.1.4-3] the old connection of a session taken over is told (v5) and closed.
    pub(super) fn take_over(&mut self, old: ConnId, now: Instant) {
        if self.conns[old as usize].is_v5() {
            self.send(old, &disconnect_packet(ReasonCode::SessionTakenOver));
        }
        tracing::debug!(conn = old, "session taken over");
        self.close(old, now, CloseKind::TakenOver);
    }

    pub(super) fn on_disconnect(&mut self, conn: ConnId, now: Instant, disconnect: Disconnect) {
        self.conns[conn as usize].peer_disconnected = true;
        let session = self.conns[conn as usize]
            .session
            .expect("a connected connection has a session");
        if let Some(expiry) = disconnect.properties.session_expiry_interval_s {
            let s = &self.sessions[session as usize];
            if s.expiry_s == 0 && expiry != 0 {
                return self.violated(conn, now, Violation::SessionExpiryRevived);
            }
            let max = self.conns[conn as usize].session_expiry_max_s;
            self.sessions[session as usize].expiry_s = expiry.min(max);
            self.journal_session(session);
        }
        // Only a Normal disconnection deletes the will ([MQTT-3.1.2-10]); 0x04 and every error
        // code leave it to be published.
        let kind = if disconnect.reason_code == ReasonCode::NORMAL_DISCONNECTION {
            CloseKind::Clean
        } else {
            CloseKind::Abrupt
        };
        self.close(conn, now, kind);
    }

    /// The broker stops: v5 clients are told (0x8B) and every connection closes. Wills are not
    /// published: sessions live in memory and end with the process, and every subscriber that
    /// could receive a will is being disconnected in the same instant.
    pub fn shutdown(&mut self, now: Instant) {
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(id, _)| id as ConnId)
            .collect();
        for conn in open {
            let c = &self.conns[conn as usize];
            if c.is_v5() && c.state == ConnState::Connected {
                self.send(conn, &disconnect_packet(ReasonCode::ServerShuttingDown));
            }
            self.close(conn, now, CloseKind::Shutdown);
        }
    }
}
