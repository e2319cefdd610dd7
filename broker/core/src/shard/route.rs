//! Routing a message and delivering it to sessions: the message path.
//!
//! `route` sends the message to the other shards that want it (one `Arc` each, never a copy),
//! delivers to this shard's plain subscribers and shared groups, and updates the retained store.
//! A session that matches through several filters gets one copy, at the highest QoS of its
//! matching subscriptions, carrying all their identifiers ([MQTT-3.3.4-2], [MQTT-3.3.4-3]).
//! A delivery goes straight into the connection's output when the session has nothing queued, the
//! in-flight window has room and the send buffer is below its limit; otherwise it waits in the
//! session queue, bounded by `MaxMessages`.

use std::time::Instant;

use ironsight_codec::{Packet, PubResponse, QoS, ReasonCode, ReasonProperties};

use super::encode::{commit_alias, publish_packet, write_publish, write_template, Templates};
use super::Shard;
use crate::conn::{ConnId, ConnState};
use crate::delivery::{Enqueued, InflightState, Offer, Outgoing, SubIds};
use crate::journal::Record;
use crate::message::SharedMessage;
use crate::routing::{delivery_qos, share_filter, ShardMsg, ShareKey};
use crate::session::SessionIdx;

/// One session's delivery in a routing pass, merged over its matching subscriptions.
#[derive(Debug)]
pub struct Target {
    session: SessionIdx,
    qos: QoS,
    retain: bool,
    sub_ids: SubIds,
}

/// Per-shard routing decision for one message.
#[derive(Debug, Default)]
struct Route {
    plain: bool,
    shares: Vec<ShareKey>,
}

/// Buffers reused by every routing pass, so routing allocates nothing in the steady state.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    stamp: u64,
    targets: Vec<Target>,
    routes: Vec<Route>,
    templates: Templates,
}

/// What a publisher is told (v5 PUBACK/PUBREC reason).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Outcome {
    pub matched: bool,
    pub rejected: bool,
    /// Other shards asked to report their outcome.
    pub awaiting: u16,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.matched |= other.matched;
        self.rejected |= other.rejected;
        self.awaiting += other.awaiting;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Delivered {
    Sent,
    Queued,
    Dropped,
    Rejected,
}

impl Shard {
    /// Routes a message published on this shard (by a client or as a will). With an `ack` token,
    /// the shards that deliver it report back whether a session refused it.
    pub(super) fn route(&mut self, now: Instant, msg: SharedMessage, ack: Option<u64>) -> Outcome {
        if msg.retain {
            self.store_retained(&msg);
        }
        self.catch_up_interest();
        let mut routes = std::mem::take(&mut self.scratch.routes);
        routes.resize_with(usize::from(self.shard_count), Route::default);
        let me = self.id;
        self.interest.for_each_match(&msg.topic, &mut |interest| {
            for shard in interest.shards.iter() {
                routes[usize::from(shard)].plain = true;
            }
            for share in &interest.shares {
                // Round robin across the shards that have members; each shard then picks a member.
                if let Some(shard) = share.shards.next_after(share.last.get()) {
                    share.last.set(shard);
                    routes[usize::from(shard)].shares.push(share.key.clone());
                }
            }
        });
        let mut outcome = Outcome::default();
        let local_shares = std::mem::take(&mut routes[usize::from(me)].shares);
        for shard in self.other_shards() {
            let route = &mut routes[usize::from(shard)];
            let delivers = route.plain || !route.shares.is_empty();
            if delivers || msg.retain {
                outcome.matched |= delivers;
                outcome.awaiting += u16::from(delivers && ack.is_some());
                let shares = std::mem::take(&mut route.shares);
                let plain = std::mem::take(&mut route.plain);
                let msg = ShardMsg::Publish {
                    msg: msg.clone(),
                    plain,
                    shares,
                    retained: msg.retain,
                    ack: ack.filter(|_| delivers),
                };
                self.queue_remote(shard, msg);
            }
        }
        routes.clear();
        self.scratch.routes = routes;
        outcome.merge(self.deliver_plain(now, &msg));
        for key in &local_shares {
            outcome.merge(self.deliver_shared(now, key, &msg, 0));
        }
        outcome
    }

    /// Delivers to this shard's plain subscribers whose filters match.
    pub(super) fn deliver_plain(&mut self, now: Instant, msg: &SharedMessage) -> Outcome {
        self.scratch.stamp += 1;
        let stamp = self.scratch.stamp;
        let Shard {
            subs,
            sessions,
            scratch,
            id,
            ..
        } = self;
        let targets = &mut scratch.targets;
        subs.for_each_match(&msg.topic, &mut |leaf| {
            for (&session, sub) in leaf {
                let s = &mut sessions[session as usize];
                if sub.options.no_local && s.uid(*id) == msg.origin {
                    continue; // [MQTT-3.8.3-3]
                }
                let qos = delivery_qos(msg.qos, sub.options.qos);
                let retain = msg.retain && sub.options.retain_as_published;
                if s.stamp == stamp {
                    let target = &mut targets[s.stamp_slot as usize];
                    target.qos = target.qos.max(qos);
                    target.retain |= retain;
                    if let Some(id) = sub.id {
                        target.sub_ids.push(id);
                    }
                } else {
                    s.stamp = stamp;
                    s.stamp_slot = targets.len() as u32;
                    let sub_ids = sub.id.map_or(SubIds::None, SubIds::One);
                    targets.push(Target {
                        session,
                        qos,
                        retain,
                        sub_ids,
                    });
                }
            }
        });
        let mut targets = std::mem::take(&mut self.scratch.targets);
        let mut outcome = Outcome {
            matched: !targets.is_empty(),
            ..Outcome::default()
        };
        self.scratch.templates.begin(msg);
        for t in targets.drain(..) {
            let offer = Offer {
                msg,
                qos: t.qos,
                retain: t.retain,
                sub_ids: t.sub_ids,
                share: None,
            };
            outcome.rejected |= self.deliver(now, t.session, offer) == Delivered::Rejected;
        }
        self.scratch.templates.end();
        self.scratch.targets = targets;
        outcome
    }

    /// Delivers to one member of the shared subscription `key` on this shard, preferring members
    /// that are connected; with no member here, passes the message to a shard that has one.
    pub(super) fn deliver_shared(
        &mut self,
        now: Instant,
        key: &ShareKey,
        msg: &SharedMessage,
        hops: u16,
    ) -> Outcome {
        let Some(&share) = self.share_index.get(key) else {
            let out = Outgoing {
                msg: msg.clone(),
                qos: msg.qos,
                retain: false,
                sub_ids: SubIds::None,
                share: None,
            };
            let forwarded = self.forward_shared(key.clone(), vec![out], hops);
            return Outcome {
                matched: forwarded,
                ..Outcome::default()
            };
        };
        let group = &mut self.shares[share as usize];
        assert!(!group.members.is_empty(), "an empty share group is removed");
        let count = group.members.len();
        let online = (0..count).map(|i| (group.next + i) % count).find(|&i| {
            self.sessions[group.members[i].session as usize]
                .conn
                .is_some()
        });
        let pick = online.unwrap_or(group.next % count);
        group.next = pick + 1;
        let member = &group.members[pick];
        let offer = Offer {
            msg,
            qos: delivery_qos(msg.qos, member.options.qos),
            retain: msg.retain && member.options.retain_as_published,
            sub_ids: member.id.map_or(SubIds::None, SubIds::One),
            share: Some(share),
        };
        let session = member.session;
        let rejected = self.deliver(now, session, offer) == Delivered::Rejected;
        Outcome {
            matched: true,
            rejected,
            awaiting: 0,
        }
    }

    /// Sends shared messages to another shard with members of `key`. Returns false when there is
    /// none (or the messages went round every shard), and the messages are dropped.
    pub(super) fn forward_shared(
        &mut self,
        key: ShareKey,
        messages: Vec<Outgoing>,
        hops: u16,
    ) -> bool {
        self.catch_up_interest();
        let me = self.id;
        let target = self.interest.get(share_filter(&key)).and_then(|interest| {
            let share = interest.shares.iter().find(|s| s.key == key)?;
            let mut others = share.shards;
            others.remove(me);
            let next = others.next_after(share.last.get())?;
            share.last.set(next);
            Some(next)
        });
        match target {
            Some(shard) if hops < self.shard_count => {
                self.queue_remote(
                    shard,
                    ShardMsg::Redispatch {
                        share: key,
                        messages,
                        hops: hops + 1,
                    },
                );
                true
            }
            _ => {
                tracing::debug!(share = %key, dropped = messages.len(), "no member left for shared messages");
                false
            }
        }
    }

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
        let (msg, qos) = (offer.msg, offer.qos);
        let delivered = match conn {
            Some(conn) if queue_empty && self.can_send(conn, session, qos) => {
                if self.transmit(conn, session, offer, now) {
                    Delivered::Sent
                } else {
                    Delivered::Dropped
                }
            }
            _ => self.enqueue(now, session, offer),
        };
        let stored = matches!(delivered, Delivered::Sent | Delivered::Queued);
        if stored && qos != QoS::AtMostOnce && self.durable(session) {
            let client_id = &self.sessions[session as usize].client_id;
            self.journal.record(Record::Stored {
                client_id,
                message: msg,
                qos,
            });
        }
        delivered
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
        if c.state != ConnState::Connected || c.out.len() >= self.settings.broker.send_buffer_max {
            return false;
        }
        if qos == QoS::AtMostOnce {
            return true;
        }
        let window = usize::from(c.client.receive_max.min(self.settings.broker.inflight_max));
        let in_flight = self.sessions[session as usize]
            .delivery
            .as_ref()
            .map_or(0, |d| d.inflight.len());
        in_flight < window
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
    ) -> bool {
        let aliases_max = self.settings.broker.outbound_aliases_max;
        let c = &self.conns[conn as usize];
        if self.scratch.templates.applies(c, &offer, aliases_max) {
            let (bytes, pid_at) = self.scratch.templates.get(c, &offer, now);
            if bytes.len() > c.client.packet_size_max as usize {
                self.drop_oversize(conn, offer.msg);
                return false;
            }
            let pid = (offer.qos != QoS::AtMostOnce).then(|| {
                self.sessions[session as usize]
                    .delivery()
                    .start(offer.to_outgoing())
            });
            write_template(&mut self.conns[conn as usize], bytes, pid_at, pid);
        } else {
            let mut publish = publish_packet(c, &offer, None, false, now, aliases_max);
            if publish.encoded_len(c.protocol) > c.client.packet_size_max as usize {
                self.drop_oversize(conn, offer.msg);
                return false;
            }
            commit_alias(&mut self.conns[conn as usize], &offer.msg.topic, &publish);
            if offer.qos != QoS::AtMostOnce {
                let pid = self.sessions[session as usize]
                    .delivery()
                    .start(offer.to_outgoing());
                publish.packet_id = Some(pid);
            }
            write_publish(&mut self.conns[conn as usize], &publish);
        }
        self.stats.messages_sent += 1;
        self.mark_dirty(conn);
        true
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
            if !self.transmit(conn, session, out.offer(), now) {
                self.journal_released(session, id);
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
        for entry in &d.inflight {
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
