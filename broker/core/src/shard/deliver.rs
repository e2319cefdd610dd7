//! Handing one message to one session: straight into its connection's output when the session
//! has nothing queued, the in-flight window has room and the send buffer is below its limit;
//! otherwise into the session queue ([`crate::queue::Delivery`]), bounded by `MaxMessages`.
//! Acknowledgements and written output pump the queue; a resumed session gets its in-flight
//! window again ([MQTT-4.4.0-1]).

use std::time::Instant;

use ironsight_codec::{Packet, PacketId, PubResponse, QoS, ReasonCode, ReasonProperties};
use slab::Slab;

use super::durability::Log;
use super::encode::{commit_alias, publish_packet, write_publish, write_template};
use super::Shard;
use crate::conn::{ConnId, ConnState};
use crate::journal::Record;
use crate::message::SharedMessage;
use crate::queue::{Enqueued, InflightState, Offer};
use crate::routing::ShareGroup;
use crate::session::SessionIdx;

/// What `transmit` did with a delivery.
enum Transmit {
    /// Written, under this packet id for QoS 1/2.
    Sent(Option<PacketId>),
    /// Larger than the client's Maximum Packet Size: dropped for this client.
    TooLarge,
}

/// What became of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Delivered {
    Sent,
    Queued,
    Dropped,
    Rejected,
}

impl Shard {
    /// Hands one message to a session: straight to its connection when possible, else queued.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        session: SessionIdx,
        offer: Offer<'_>,
    ) -> Delivered {
        if offer.msg.is_expired(now) {
            self.stats.messages_expired += 1;
            return Delivered::Dropped;
        }
        let s = &self.sessions[session as usize];
        let queue_empty = s.delivery.as_ref().is_none_or(|d| d.queue.is_empty());
        let conn = s.conn;
        if conn.is_none() && offer.qos == QoS::AtMostOnce {
            // QoS 0 is not kept for disconnected sessions (the spec leaves it to the server).
            self.stats.messages_dropped_offline += 1;
            return Delivered::Dropped;
        }
        let qos = offer.qos;
        let journaled = qos != QoS::AtMostOnce && self.persistent(session);
        match conn {
            Some(conn) if queue_empty && self.can_send(conn, session, qos) => {
                let mark = self.output_mark(conn);
                if journaled {
                    self.journal_stored(session, &offer);
                }
                let id = offer.msg.id;
                match self.transmit(conn, session, offer, now) {
                    Transmit::Sent(pid) => {
                        if let (true, Some(packet_id)) = (journaled, pid) {
                            self.journal_packet_id(session, |client_id| Record::Sent {
                                client_id,
                                id,
                                packet_id,
                            });
                        }
                        if qos == QoS::ExactlyOnce {
                            // The subscriber must not see a packet id the journal could still
                            // lose.
                            self.hold_output(conn, mark);
                        }
                        Delivered::Sent
                    }
                    Transmit::TooLarge => {
                        self.journal_released(session, id);
                        Delivered::Dropped
                    }
                }
            }
            _ => {
                let (msg, shared) = (offer.msg, offer.share.is_some());
                let delivered = self.enqueue(now, session, offer);
                // Shared subscriptions are never marked: their messages go to whichever
                // member is connected, and no one member is to be woken for them.
                if conn.is_none() && !shared && delivered == Delivered::Queued {
                    self.count_arrival(session, &msg.topic);
                }
                if journaled && delivered == Delivered::Queued {
                    let Shard {
                        sessions,
                        shares,
                        journal,
                        ..
                    } = self;
                    let s = &sessions[session as usize];
                    let queued = s.delivery.as_ref().and_then(|d| d.queue.back());
                    let offer = queued.expect("just queued").offer();
                    record_stored(journal, &s.client_id, shares, &offer);
                }
                delivered
            }
        }
    }

    /// Tells the journal that a durable session holds the message `offer` delivers.
    fn journal_stored(&mut self, session: SessionIdx, offer: &Offer<'_>) {
        let client_id = &self.sessions[session as usize].client_id;
        record_stored(&mut self.journal, client_id, &self.shares, offer);
    }

    fn enqueue(&mut self, now: Instant, session: SessionIdx, offer: Offer<'_>) -> Delivered {
        // Expired messages will never be delivered: they must not fill the queue of a session
        // that is offline, where pump does not run. (Only the head is looked at, which is where
        // they are when messages share one expiry; the rest go when pump reaches them.)
        self.drop_expired_head(session, now);
        let s = &mut self.sessions[session as usize];
        let (max, behavior) = (s.queue_max as usize, s.queue_behavior);
        match s.delivery().enqueue(offer.to_outgoing(), max, behavior) {
            Enqueued::Accepted => Delivered::Queued,
            Enqueued::DiscardedOldest(id) => {
                self.stats.messages_discarded += 1;
                self.journal_released(session, id);
                Delivered::Queued
            }
            Enqueued::Rejected => {
                self.stats.messages_rejected += 1;
                Delivered::Rejected
            }
        }
    }

    /// Whether a message of `qos` can be written to `conn` now.
    fn can_send(&self, conn: ConnId, session: SessionIdx, qos: QoS) -> bool {
        let c = &self.conns[conn as usize];
        if c.state != ConnState::Connected
            || c.out.pending() >= self.settings.broker.send_buffer_max
        {
            return false;
        }
        if qos == QoS::AtMostOnce {
            return true;
        }
        let window = usize::from(c.client.receive_max.min(self.settings.broker.inflight_max));
        // The span, not the count: ids stay consecutive, so the window is indexed by them
        // (`queue::Window`). A client acknowledging in order, as [MQTT-4.6.0-2] asks, sees no
        // difference.
        let span = self.sessions[session as usize]
            .delivery
            .as_ref()
            .map_or(0, |d| d.inflight.span());
        span < window
    }

    /// Writes a delivery to the connection, entering it in the in-flight window for QoS > 0.
    /// A message larger than the client's Maximum Packet Size is dropped for this client only
    /// ([MQTT-3.1.2-25]).
    fn transmit(
        &mut self,
        conn: ConnId,
        session: SessionIdx,
        offer: Offer<'_>,
        now: Instant,
    ) -> Transmit {
        let aliases_max = self.settings.broker.outbound_aliases_max;
        let c = &self.conns[conn as usize];
        let pid = if self.scratch.templates.applies(c, &offer, aliases_max) {
            let (bytes, pid_at) = self.scratch.templates.get(c, &offer, now);
            if bytes.len() > c.client.packet_size_max as usize {
                self.drop_oversize(conn, offer.msg);
                return Transmit::TooLarge;
            }
            let pid = (offer.qos != QoS::AtMostOnce).then(|| {
                self.sessions[session as usize]
                    .delivery()
                    .start(offer.to_outgoing())
            });
            write_template(&mut self.conns[conn as usize], bytes, pid_at, pid);
            pid
        } else {
            let mut publish = publish_packet(c, &offer, None, false, now, aliases_max);
            if publish.encoded_len(c.protocol) > c.client.packet_size_max as usize {
                self.drop_oversize(conn, offer.msg);
                return Transmit::TooLarge;
            }
            commit_alias(&mut self.conns[conn as usize], &offer.msg.topic, &publish);
            if offer.qos != QoS::AtMostOnce {
                let pid = self.sessions[session as usize]
                    .delivery()
                    .start(offer.to_outgoing());
                publish.packet_id = Some(pid);
            }
            write_publish(&mut self.conns[conn as usize], &publish);
            publish.packet_id
        };
        self.stats.messages_sent += 1;
        let c = &mut self.conns[conn as usize];
        c.msgs_out += 1;
        let endpoint = c.endpoint;
        self.stats.endpoint(endpoint).messages_out += 1;
        self.mark_dirty(conn);
        Transmit::Sent(pid)
    }

    fn drop_oversize(&mut self, conn: ConnId, msg: &SharedMessage) {
        tracing::debug!(conn, topic = %msg.topic, "message exceeds the client's maximum packet size; dropped");
        self.stats.messages_oversize += 1;
    }

    /// Drops the expired messages at the head of a session's queue.
    fn drop_expired_head(&mut self, session: SessionIdx, now: Instant) {
        while let Some(out) = self.sessions[session as usize]
            .delivery
            .as_mut()
            .and_then(|d| d.pop_expired(now))
        {
            self.stats.messages_expired += 1;
            self.journal_released(session, out.msg.id);
        }
    }

    /// Moves queued messages to the connection while the window and the send buffer allow.
    pub(super) fn pump(&mut self, session: SessionIdx, now: Instant) {
        let Some(conn) = self.sessions[session as usize].conn else {
            return;
        };
        loop {
            let Some(d) = self.sessions[session as usize].delivery.as_mut() else {
                return;
            };
            if d.queue.front().is_some_and(|o| o.msg.is_expired(now)) {
                self.drop_expired_head(session, now);
                continue;
            }
            let Some(front) = d.queue.front() else { break };
            let qos = front.qos;
            if !self.can_send(conn, session, qos) {
                return;
            }
            let d = self.sessions[session as usize]
                .delivery
                .as_mut()
                .expect("checked above");
            let out = d.queue.pop_front().expect("checked above");
            let id = out.msg.id;
            let mark = self.output_mark(conn);
            match self.transmit(conn, session, out.offer(), now) {
                Transmit::Sent(Some(packet_id)) => {
                    self.journal_packet_id(session, |client_id| Record::Sent {
                        client_id,
                        id,
                        packet_id,
                    });
                    if qos == QoS::ExactlyOnce {
                        self.hold_output(conn, mark);
                    }
                }
                Transmit::Sent(None) => {}
                Transmit::TooLarge => self.journal_released(session, id),
            }
        }
        self.sessions[session as usize].shrink();
    }

    /// After a session is resumed: every unacknowledged PUBLISH again with DUP set, every
    /// PUBREL again ([MQTT-4.4.0-1]), in their original order.
    pub(super) fn resend_inflight(&mut self, session: SessionIdx, now: Instant) {
        let Some(conn) = self.sessions[session as usize].conn else {
            return;
        };
        let Shard {
            sessions, conns, ..
        } = self;
        let Some(d) = sessions[session as usize].delivery.as_ref() else {
            return;
        };
        let c = &mut conns[conn as usize];
        let mut oversize = Vec::new();
        for entry in d.inflight.iter() {
            match (entry.state, &entry.out) {
                (InflightState::AwaitingPubComp, _) | (_, None) => {
                    let rel = PubResponse {
                        packet_id: entry.pid,
                        reason_code: ReasonCode::Success,
                        properties: ReasonProperties::default(),
                    };
                    Packet::PubRel(rel).encode(c.protocol, c.out.tail());
                }
                (_, Some(out)) => {
                    // Aliases do not survive a connection, and a resend must not depend on one.
                    let mut publish =
                        publish_packet(c, &out.offer(), Some(entry.pid), true, now, 0);
                    publish.properties.topic_alias = None;
                    if publish.encoded_len(c.protocol) > c.client.packet_size_max as usize {
                        // The new connection asked for smaller packets ([MQTT-3.1.2-25]).
                        oversize.push(entry.pid);
                        continue;
                    }
                    write_publish(c, &publish);
                }
            }
        }
        if !d.inflight.is_empty() {
            self.mark_dirty(conn);
        }
        for pid in oversize {
            let d = self.sessions[session as usize].delivery();
            let Some(out) = d.drop_inflight(pid) else {
                continue;
            };
            self.journal_released(session, out.msg.id);
            self.drop_oversize(conn, &out.msg);
        }
    }
}

fn record_stored(journal: &mut Log, client_id: &str, shares: &Slab<ShareGroup>, offer: &Offer<'_>) {
    journal.record(Record::Stored {
        client_id,
        message: offer.msg,
        qos: offer.qos,
        retain: offer.retain,
        sub_ids: offer.sub_ids.as_slice(),
        share: offer.share.map(|share| &*shares[share as usize].key),
    });
}
