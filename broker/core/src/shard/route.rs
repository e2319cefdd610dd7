//! Routing a message: which shards, sessions and shared-group members it goes to.
//!
//! `route` sends the message to the other shards that want it (one `Arc` each, never a copy),
//! delivers to this shard's plain subscribers and shared groups, and updates the retained store.
//! A session that matches through several filters gets one copy, at the highest QoS of its
//! matching subscriptions, carrying all their identifiers ([MQTT-3.3.4-2], [MQTT-3.3.4-3]).
//! Handing the copy to the session (its connection, or its queue) is `deliver`'s.

use std::time::Instant;

use ironsight_codec::QoS;

use super::deliver::Delivered;
use super::encode::Templates;
use super::Shard;
use crate::message::SharedMessage;
use crate::queue::{Offer, Outgoing, SubIds};
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
    /// One encoding of the message being delivered, shared by the sessions it goes to.
    pub(super) templates: Templates,
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
            // Every shard gets a retained message, for its replica, and reports on it like
            // the shards that deliver: the acknowledgement waits until every replica holds it
            // (a SUBSCRIBE sent after it finds the message on any shard) and the record of the
            // shard that journals the topic is durable.
            if delivers || msg.retain {
                outcome.matched |= delivers;
                outcome.awaiting += u16::from(ack.is_some());
                let shares = std::mem::take(&mut route.shares);
                let plain = std::mem::take(&mut route.plain);
                let msg = ShardMsg::Publish {
                    msg: msg.clone(),
                    plain,
                    shares,
                    retained: msg.retain,
                    ack,
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
}
