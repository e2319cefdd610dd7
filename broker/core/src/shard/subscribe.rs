//! SUBSCRIBE and UNSUBSCRIBE: the local trie, shared groups, the interest other shards keep of
//! this one, and retained messages on subscribe.
//!
//! When a subscribe gives this shard its first subscriber on a filter (or a share), every other
//! shard must learn it before the client is told the subscription exists; otherwise a message
//! published elsewhere right after the SUBACK could miss it. So the SUBACK then waits on a
//! barrier: each other shard acknowledges the interest change, and meanwhile the connection's
//! further input waits, so its packets are still handled in order.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{
    Packet, QoS, ReasonCode, ReasonProperties, RetainHandling, SubAck, Subscribe, SubscribeFilter,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

use super::{Barrier, Shard};
use crate::conn::ConnId;
use crate::delivery::{Offer, SubIds};
use crate::journal::Record;
use crate::policy::Action;
use crate::routing::{
    share_key, Interest, LocalSub, Member, ShardId, ShardMsg, ShareGroup, ShareInterest, ShareKey,
};
use crate::session::{SessionIdx, Subscription};
use crate::topic::{self, FilterError, FilterSplit, ParsedFilter};

/// A SUBACK waiting for a barrier, and the retained messages to send after it.
#[derive(Debug)]
pub(super) struct Deferred {
    suback: SubAck,
    retained: Vec<RetainedRequest>,
}

#[derive(Debug)]
struct RetainedRequest {
    filter: Box<str>,
    options: SubscriptionOptions,
    id: Option<NonZeroU32>,
}

/// An interest change this shard must announce.
struct Announcement {
    filter: Arc<str>,
    share: Option<ShareKey>,
}

struct Added {
    is_new: bool,
    announcement: Option<Announcement>,
}

fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

impl Shard {
    fn parse<'a>(&self, text: &'a str) -> Result<ParsedFilter<'a>, FilterError> {
        self.split(text).map(|split| split.parts(text))
    }

    fn split(&self, text: &str) -> Result<FilterSplit, FilterError> {
        let broker = &self.settings.broker;
        topic::split_filter(text, broker.topic_len_max, broker.topic_levels_max)
    }

    pub(super) fn on_subscribe(&mut self, conn: ConnId, now: Instant, subscribe: Subscribe) {
        let session = self.conns[conn as usize].session.expect("connected");
        // Each filter is parsed once, here; what the parse found is kept for applying it.
        let mut splits = Vec::with_capacity(subscribe.filters.len());
        for f in &subscribe.filters {
            let split = self.split(&f.filter);
            let violation = match split {
                // Over this broker's limits only: refused filter by filter (0x8F), below.
                Err(FilterError::TooLong) => None,
                // [MQTT-4.7.1-1], [MQTT-4.7.1-2], [MQTT-4.7.3-1], [MQTT-4.8.2-1], [MQTT-4.8.2-2]
                Err(error) => Some(error.to_string()),
                // [MQTT-3.8.3-4] No Local on a shared subscription.
                Ok(split) if split.is_shared() && f.options.no_local => {
                    Some("No Local on a shared subscription".into())
                }
                Ok(_) => None,
            };
            if let Some(violation) = violation {
                tracing::debug!(conn, filter = %f.filter, %violation, "SUBSCRIBE refused");
                return self.fail(conn, now, ReasonCode::ProtocolError);
            }
            splits.push(split);
        }
        let id = subscribe.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut announcements = Vec::new();
        for (f, split) in subscribe.filters.iter().zip(splits) {
            match self.add_subscription(session, f, split, id) {
                Ok(added) => {
                    let wants_retained = match f.options.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNewSubscription => added.is_new,
                        RetainHandling::DoNotSend => false,
                    };
                    let shared = split.is_ok_and(FilterSplit::is_shared);
                    if wants_retained && !shared {
                        retained.push(RetainedRequest {
                            filter: (*f.filter).into(),
                            options: f.options,
                            id,
                        });
                    }
                    announcements.extend(added.announcement);
                    codes.push(granted(f.options.qos));
                }
                Err(reason) => codes.push(reason),
            }
        }
        let suback = SubAck {
            packet_id: subscribe.packet_id,
            reason_codes: codes,
            properties: ReasonProperties::default(),
        };
        let deferred = Deferred { suback, retained };
        if announcements.is_empty() || self.shard_count == 1 {
            return self.complete_subscribe(conn, now, deferred);
        }
        self.next_barrier += 1;
        let barrier = self.next_barrier;
        let waiting = announcements.len() * usize::from(self.shard_count - 1);
        for a in announcements {
            self.announce(a, true, Some(barrier));
        }
        let c = &mut self.conns[conn as usize];
        c.paused_on = std::num::NonZeroU64::new(barrier);
        let barrier_state = Barrier {
            conn,
            generation: c.generation,
            waiting: u32::try_from(waiting).expect("bounded by MaxSubscriptionsPerSession × 64"),
            then: deferred,
        };
        self.barriers.insert(barrier, barrier_state);
    }

    /// Adds or replaces one subscription ([MQTT-3.8.4-3]).
    fn add_subscription(
        &mut self,
        session: SessionIdx,
        f: &SubscribeFilter,
        split: Result<FilterSplit, FilterError>,
        id: Option<NonZeroU32>,
    ) -> Result<Added, ReasonCode> {
        // Syntax was checked for the whole packet; what is left is the broker's length and depth
        // limits: a well-formed filter this server does not accept (0x8F).
        let parsed = split
            .map_err(|error| {
                tracing::debug!(filter = %f.filter, %error, "topic filter refused");
                ReasonCode::TopicFilterInvalid
            })?
            .parts(&f.filter);
        let s = &self.sessions[session as usize];
        let conn = s.conn.expect("subscribing sessions are connected");
        if !self
            .endpoint(conn)
            .topic_rules
            .iter()
            .any(|r| r.allows(Action::Subscribe, parsed.filter, &s.client_id))
        {
            tracing::debug!(filter = %f.filter, "subscribe not authorized");
            return Err(ReasonCode::NotAuthorized);
        }
        let text = topic::subscription_text(&f.filter);
        let is_new = !s.subscriptions.contains(&text);
        if is_new && s.subscriptions.len() >= self.settings.broker.subscriptions_max {
            return Err(ReasonCode::QuotaExceeded);
        }
        let (share, announcement) = match parsed.share_group {
            None => (
                None,
                self.add_plain(
                    session,
                    parsed.filter,
                    LocalSub {
                        options: f.options,
                        id,
                    },
                ),
            ),
            Some(group) => {
                let (share, announcement) =
                    self.add_member(session, group, parsed.filter, f.options, id);
                (Some(share), announcement)
            }
        };
        if self.durable(session) {
            let client_id = &self.sessions[session as usize].client_id;
            let record = Record::Subscribed {
                client_id,
                filter: &text,
                options: f.options,
                id,
            };
            self.journal.record(record);
        }
        let sub = Subscription {
            text: (*text).into(),
            options: f.options,
            id,
            share,
        };
        self.sessions[session as usize].subscriptions.insert(sub);
        Ok(Added {
            is_new,
            announcement,
        })
    }

    fn add_plain(
        &mut self,
        session: SessionIdx,
        filter: &str,
        sub: LocalSub,
    ) -> Option<Announcement> {
        let leaf = self.subs.get_or_insert_with(filter, Default::default);
        let first = leaf.is_empty();
        leaf.insert(session, sub);
        first.then(|| Announcement {
            filter: filter.into(),
            share: None,
        })
    }

    fn add_member(
        &mut self,
        session: SessionIdx,
        group: &str,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    ) -> (u32, Option<Announcement>) {
        let key = share_key(group, filter);
        let member = Member {
            session,
            options,
            id,
        };
        if let Some(&share) = self.share_index.get(&key) {
            let members = &mut self.shares[share as usize].members;
            match members.iter().position(|m| m.session == session) {
                Some(at) => members[at] = member,
                None => members.push(member),
            }
            return (share, None);
        }
        let share = self.shares.insert(ShareGroup {
            key: key.clone(),
            members: vec![member],
            next: 0,
        }) as u32;
        self.share_index.insert(key.clone(), share);
        // This shard counts among the shards with members, for the round robin of its own publishes.
        self.apply_interest(self.id, filter, Some(&key), true);
        (
            share,
            Some(Announcement {
                filter: filter.into(),
                share: Some(key),
            }),
        )
    }

    fn announce(&mut self, a: Announcement, add: bool, barrier: Option<u64>) {
        for shard in self.other_shards() {
            let msg = ShardMsg::Interest {
                from: self.id,
                filter: a.filter.clone(),
                share: a.share.clone(),
                add,
                barrier,
            };
            self.queue_remote(shard, msg);
        }
    }

    /// Records that shard `from` has (or no longer has) subscribers on `filter` / the share `key`.
    pub(super) fn apply_interest(
        &mut self,
        from: ShardId,
        filter: &str,
        key: Option<&ShareKey>,
        add: bool,
    ) {
        let interest = self.interest.get_or_insert_with(filter, Interest::default);
        match key {
            None if add => interest.shards.insert(from),
            None => interest.shards.remove(from),
            Some(key) => {
                let at = interest.shares.iter().position(|s| s.key == *key);
                match (at, add) {
                    (Some(at), true) => interest.shares[at].shards.insert(from),
                    (None, true) => {
                        let mut shards = crate::routing::ShardSet::default();
                        shards.insert(from);
                        interest.shares.push(ShareInterest {
                            key: key.clone(),
                            shards,
                            last: std::cell::Cell::new(from),
                        });
                    }
                    (Some(at), false) => {
                        interest.shares[at].shards.remove(from);
                        if interest.shares[at].shards.is_empty() {
                            interest.shares.swap_remove(at);
                        }
                    }
                    (None, false) => {}
                }
            }
        }
        self.interest.remove_if(filter, Interest::is_empty);
    }

    /// Sends the SUBACK, then the retained messages of the new subscriptions ([MQTT-3.3.1-9]).
    fn complete_subscribe(&mut self, conn: ConnId, now: Instant, deferred: Deferred) {
        self.send(conn, &Packet::SubAck(deferred.suback));
        let Some(session) = self.conns[conn as usize].session else {
            return;
        };
        for request in deferred.retained {
            self.send_retained(session, &request, now);
        }
    }

    /// `request.filter` is a plain filter (a shared subscription gets no retained messages),
    /// checked when it was subscribed.
    fn send_retained(&mut self, session: SessionIdx, request: &RetainedRequest, now: Instant) {
        let uid = self.sessions[session as usize].uid(self.id);
        let mut found = Vec::new();
        self.retained
            .for_each_in_filter(&request.filter, &mut |_, msg| {
                let own = request.options.no_local && msg.origin == uid;
                if !msg.is_expired(now) && !own {
                    found.push(msg.clone());
                }
            });
        for msg in found {
            let qos = crate::routing::delivery_qos(msg.qos, request.options.qos);
            let sub_ids = request.id.map_or(SubIds::None, SubIds::One);
            let offer = Offer {
                msg: &msg,
                qos,
                retain: true,
                sub_ids,
                share: None,
            };
            self.deliver(now, session, offer);
        }
    }

    /// Another shard applied an interest change of ours.
    pub(super) fn barrier_acked(&mut self, barrier: u64, now: Instant) {
        let Some(state) = self.barriers.get_mut(&barrier) else {
            return;
        };
        state.waiting -= 1;
        if state.waiting > 0 {
            return;
        }
        let state = self.barriers.remove(&barrier).expect("present above");
        if !self.is_current(state.conn, state.generation)
            || !self.conns[state.conn as usize].is_open()
        {
            return; // the subscriber left meanwhile; its subscription was dropped with its session
        }
        self.conns[state.conn as usize].paused_on = None;
        self.complete_subscribe(state.conn, now, state.then);
        self.drain_inbuf(state.conn, now);
        self.events.push(super::Event::Resumed { conn: state.conn });
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, now: Instant, unsubscribe: Unsubscribe) {
        let session = self.conns[conn as usize].session.expect("connected");
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let text = topic::subscription_text(filter);
            match self.sessions[session as usize].subscriptions.remove(&text) {
                Some(sub) => {
                    if self.durable(session) {
                        let client_id = &self.sessions[session as usize].client_id;
                        self.journal.record(Record::Unsubscribed {
                            client_id,
                            filter: &sub.text,
                        });
                    }
                    self.drop_subscription(session, &sub, now);
                    codes.push(ReasonCode::Success);
                }
                None => codes.push(ReasonCode::NoSubscriptionExisted),
            }
        }
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_codes: codes,
            properties: ReasonProperties::default(),
        };
        self.send(conn, &Packet::UnsubAck(unsuback));
    }

    /// Takes one subscription out of the tries. A shared member's pending messages of that
    /// share go to the other members.
    pub(super) fn drop_subscription(
        &mut self,
        session: SessionIdx,
        sub: &Subscription,
        now: Instant,
    ) {
        let parsed = self.parse(&sub.text).expect("stored filters were valid");
        let filter = parsed.filter;
        let Some(share) = sub.share else {
            let Some(leaf) = self.subs.get_mut(filter) else {
                return;
            };
            leaf.remove(&session);
            if leaf.is_empty() {
                self.subs.remove(filter);
                self.announce(
                    Announcement {
                        filter: filter.into(),
                        share: None,
                    },
                    false,
                    None,
                );
            }
            return;
        };
        let group = &mut self.shares[share as usize];
        group.members.retain(|m| m.session != session);
        let key = group.key.clone();
        if group.members.is_empty() {
            self.shares.remove(share as usize);
            self.share_index.remove(&key);
            self.apply_interest(self.id, filter, Some(&key), false);
            self.announce(
                Announcement {
                    filter: filter.into(),
                    share: Some(key.clone()),
                },
                false,
                None,
            );
        }
        // A connected member that unsubscribes still acknowledges what it was sent; a session
        // that ends never will.
        let s = &mut self.sessions[session as usize];
        let ending = s.conn.is_none();
        let pending = s
            .delivery
            .as_mut()
            .map(|d| d.take_shared(share, ending))
            .unwrap_or_default();
        for out in pending {
            self.journal_released(session, out.msg.id);
            self.deliver_shared(now, &key, &out.msg, 0);
        }
    }
}
