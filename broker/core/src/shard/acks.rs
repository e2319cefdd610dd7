//! Acknowledging inbound QoS 1/2 PUBLISHes in order, when some of the answer is on other shards.
//!
//! A v5 publisher is told, in its PUBACK or PUBREC, whether a subscriber's full queue refused the
//! message (0x97) and whether anyone subscribed at all (0x10). Subscribers on other shards answer
//! asynchronously, so such an acknowledgement waits for their [`ShardMsg::PublishOutcome`]s; the
//! ones after it wait too, because acknowledgements go out in the order the PUBLISHes arrived
//! ([MQTT-4.6.0-2], [MQTT-4.6.0-3]). v3 publishers are acknowledged at once: they cannot be told.

use std::collections::VecDeque;

use ironsight_codec::{Packet, PacketId, PubResponse, ReasonCode, ReasonProperties};

use super::Shard;
use crate::conn::ConnId;
use crate::journal::Record;

#[derive(Debug)]
pub(super) struct PendingAck {
    pub pid: PacketId,
    pub qos2: bool,
    /// Outcomes still expected from other shards.
    pub waiting: u16,
    pub matched: bool,
    pub rejected: bool,
    pub token: Option<u64>,
}

impl PendingAck {
    fn reason(&self) -> ReasonCode {
        if self.rejected {
            ReasonCode::QuotaExceeded
        } else if !self.matched {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        }
    }
}

/// A connection's acknowledgements waiting for other shards, in arrival order.
pub(super) type AckQueue = VecDeque<PendingAck>;

impl Shard {
    /// QoS 1 PUBLISHes of `conn` that are not acknowledged yet (they count against the Receive
    /// Maximum we advertised, as the session's `inbound_qos2` ids do for QoS 2).
    pub(super) fn pending_acks(&self, conn: ConnId) -> usize {
        self.acks
            .get(&conn)
            .map_or(0, |q| q.iter().filter(|a| !a.qos2).count())
    }

    /// Sends the acknowledgement now, or queues it behind those still waiting.
    pub(super) fn acknowledge(&mut self, conn: ConnId, ack: PendingAck) {
        let busy = self.acks.get(&conn).is_some_and(|q| !q.is_empty());
        if ack.waiting == 0 && !busy {
            return self.send_ack(conn, &ack);
        }
        if let (Some(token), true) = (ack.token, ack.waiting > 0) {
            self.ack_tokens.insert(token, conn);
        }
        self.acks.entry(conn).or_default().push_back(ack);
    }

    /// A QoS 2 PUBLISH came again before its PUBREL (after a reconnect, say): it was routed
    /// once, and is only acknowledged again, in order behind the acknowledgements still waiting,
    /// unless its first PUBREC is among those.
    pub(super) fn acknowledge_resent_qos2(&mut self, conn: ConnId, pid: PacketId) {
        let first_pending = self
            .acks
            .get(&conn)
            .is_some_and(|q| q.iter().any(|a| a.qos2 && a.pid == pid));
        if !first_pending {
            let again = PendingAck {
                pid,
                qos2: true,
                waiting: 0,
                matched: true,
                rejected: false,
                token: None,
            };
            self.acknowledge(conn, again);
        }
    }

    /// Another shard delivered (or refused) a message whose acknowledgement waits for it.
    pub(super) fn publish_outcome(&mut self, token: u64, rejected: bool) {
        if self.notification_outcome(token, rejected) {
            return;
        }
        let Some(&conn) = self.ack_tokens.get(&token) else {
            return;
        };
        let Some(queue) = self.acks.get_mut(&conn) else {
            self.ack_tokens.remove(&token);
            return;
        };
        let Some(ack) = queue.iter_mut().find(|a| a.token == Some(token)) else {
            self.ack_tokens.remove(&token);
            return;
        };
        ack.rejected |= rejected;
        ack.waiting -= 1;
        if ack.waiting == 0 {
            self.ack_tokens.remove(&token);
        }
        while self
            .acks
            .get(&conn)
            .and_then(|q| q.front())
            .is_some_and(|a| a.waiting == 0)
        {
            let ack = self
                .acks
                .get_mut(&conn)
                .and_then(VecDeque::pop_front)
                .expect("checked");
            self.send_ack(conn, &ack);
        }
        if self.acks.get(&conn).is_some_and(VecDeque::is_empty) {
            self.acks.remove(&conn);
        }
    }

    fn send_ack(&mut self, conn: ConnId, ack: &PendingAck) {
        if !self.conns.get(conn as usize).is_some_and(|c| c.is_open()) {
            return;
        }
        let reason = ack.reason();
        let response = PubResponse {
            packet_id: ack.pid,
            reason_code: reason,
            properties: ReasonProperties::default(),
        };
        if !ack.qos2 {
            return self.send(conn, &Packet::PubAck(response));
        }
        if reason.is_error() {
            // A refused QoS 2 message ends its flow here ([MQTT-4.3.3-9]): the id is free again.
            let session = self.conns[conn as usize]
                .session
                .expect("open connections have a session");
            self.sessions[session as usize]
                .delivery()
                .inbound_qos2
                .retain(|&p| p != ack.pid);
            self.journal_packet_id(session, |client_id| Record::InboundReleased {
                client_id,
                packet_id: ack.pid,
            });
        }
        self.send(conn, &Packet::PubRec(response));
    }

    /// The connection ended: its acknowledgements will never be sent.
    pub(super) fn forget_acks(&mut self, conn: ConnId) {
        if let Some(queue) = self.acks.remove(&conn) {
            for token in queue.iter().filter_map(|a| a.token) {
                self.ack_tokens.remove(&token);
            }
        }
    }
}
