//! SUBSCRIBE and UNSUBSCRIBE: the local trie, shared groups, and the interest other shards keep
//! of this one. The retained messages a SUBSCRIBE asks for follow its SUBACK, from `retained`.
//!
//! When a subscribe gives this shard its first subscriber on a filter (or a share), every other
//! shard learns it through the [`crate::interest::InterestBoard`] before the SUBSCRIBE's
//! handling returns: a message published anywhere after that reaches the new subscriber, with
//! or without its SUBACK (the guarantee and why it holds: [`crate::interest`]).

use std::num::NonZeroU32;
use std::time::Instant;

use ironsight_codec::{
    Packet, QoS, ReasonCode, ReasonProperties, RetainHandling, SubAck, SubscribeFilter,
    SubscribeFilters, SubscribeFrame, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use super::retained::RetainedRequest;
use super::Shard;
use crate::conn::ConnId;
use crate::interest::{Interest, InterestChange};
use crate::journal::Record;
use crate::queue::ShareId;
use crate::routing::{share_key, LocalSub, Member, ShardId, ShareGroup, ShareKey};
use crate::session::{SessionIdx, Subscription};
use crate::topic::{self, FilterError, FilterSplit, ParsedFilter};
use crate::violation::Violation;

/// Filters of one SUBSCRIBE checked or applied per call, so that a SUBSCRIBE with hundreds of
/// thousands of filters holds its shard for about a millisecond at a time, not for seconds.
pub const SUBSCRIBE_SLICE: usize = 4096;

/// A SUBSCRIBE in progress: its filters are checked first (`splits` holds what parsing each
/// checked one found), then applied one by one (`codes` holds the reason code of each applied).
/// The filters stay in the frame; `checking` and `applying` read them in turn, and `checked` says
/// that `checking` read the last one.
#[derive(Debug)]
pub(super) struct Unfinished {
    subscribe: SubscribeFrame,
    checking: SubscribeFilters,
    checked: bool,
    applying: SubscribeFilters,
    splits: Vec<Result<FilterSplit, FilterError>>,
    codes: Vec<ReasonCode>,
    retained: Vec<RetainedRequest>,
}

struct Added {
    is_new: bool,
}

/// What makes a filter a protocol violation. A filter over this broker's limits only is not
/// one: it is refused on its own (0x8F) when applied.
fn violation(f: &SubscribeFilter, split: Result<FilterSplit, FilterError>) -> Option<Violation> {
    match split {
        Err(FilterError::TooLong) => None,
        Err(error) => Some(Violation::TopicFilterInvalid(error)),
        Ok(split) if split.is_shared() && f.options.no_local => {
            Some(Violation::NoLocalOnSharedSubscription)
        }
        Ok(_) => None,
    }
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

    pub(super) fn split(&self, text: &str) -> Result<FilterSplit, FilterError> {
        let broker = &self.settings.broker;
        topic::split_filter(text, broker.topic_len_max, broker.topic_levels_max)
    }

    pub(super) fn on_subscribe(&mut self, conn: ConnId, now: Instant, subscribe: SubscribeFrame) {
        let work = Unfinished {
            checked: false,
            splits: Vec::new(),
            codes: Vec::new(),
            checking: subscribe.filters(),
            applying: subscribe.filters(),
            subscribe,
            retained: Vec::new(),
        };
        self.subscribe_slice(conn, now, work);
    }

    /// When [`Shard::work`] next has something to do: `now` while a SUBSCRIBE is in progress
    /// on some connection, else when the round of disconnected-client notification in progress
    /// has its next session due; `None` with neither. The server calls it in a later round,
    /// after the shard looked at its sockets again.
    pub fn next_work(&self, now: Instant) -> Option<Instant> {
        if self.unfinished.is_empty() {
            self.notices.next_at()
        } else {
            Some(now)
        }
    }

    /// Takes the next slice of the SUBSCRIBE in progress that waited longest, and of the
    /// notification round in progress. A connection whose SUBSCRIBE completes takes input
    /// again: it is added to `resumed`.
    pub fn work(&mut self, now: Instant, resumed: &mut Vec<ConnId>) {
        if self.notices.in_round() {
            self.notify_slice(now);
        }
        while let Some(conn) = self.unfinished_order.pop_front() {
            // A connection that closed meanwhile left its work behind; skip it.
            if let Some(work) = self.unfinished.remove(&conn) {
                let mark = self.output_mark(conn);
                self.subscribe_slice(conn, now, *work);
                self.hold_output(conn, mark);
                if !self.unfinished.contains_key(&conn) {
                    resumed.push(conn);
                }
                return;
            }
        }
    }

    /// Checks, then applies, at most [`SUBSCRIBE_SLICE`] filters of `work`. The whole packet
    /// is checked before any filter is applied, so a malformed SUBSCRIBE changes nothing; each
    /// filter is parsed once, when checked, and what the parse found is kept for applying it.
    fn subscribe_slice(&mut self, conn: ConnId, now: Instant, mut work: Unfinished) {
        let mut budget = SUBSCRIBE_SLICE;
        while !work.checked && budget > 0 {
            let f = match work.checking.next_filter() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    work.checked = true;
                    break;
                }
                Err(error) => return self.decode_failed(conn, now, error, &[]),
            };
            let split = self.split(&f.filter);
            if let Some(violation) = violation(&f, split) {
                tracing::debug!(conn, filter = %f.filter, "SUBSCRIBE refused");
                return self.violated(conn, now, violation);
            }
            work.splits.push(split);
            budget -= 1;
        }
        let session = self.conns[conn as usize].session.expect("connected");
        let filters = work.splits.len();
        while work.checked && work.codes.len() < filters && budget > 0 {
            let f = work.applying.next_filter().ok().flatten();
            let f = f.expect("the filters applied were all read and checked before");
            let split = work.splits[work.codes.len()];
            let id = work.subscribe.properties.subscription_identifier;
            let code = match self.add_subscription(session, &f, split, id) {
                Ok(added) => {
                    let wants_retained = match f.options.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNewSubscription => added.is_new,
                        RetainHandling::DoNotSend => false,
                    };
                    if wants_retained && !split.is_ok_and(FilterSplit::is_shared) {
                        work.retained.push(RetainedRequest {
                            filter: (*f.filter).into(),
                            options: f.options,
                            id,
                        });
                    }
                    granted(f.options.qos)
                }
                Err(reason) => reason,
            };
            work.codes.push(code);
            budget -= 1;
        }
        if !work.checked || work.codes.len() < filters {
            self.conns[conn as usize].paused = true;
            self.unfinished.insert(conn, Box::new(work));
            self.unfinished_order.push_back(conn);
            return;
        }
        self.conns[conn as usize].paused = false;
        let suback = SubAck {
            packet_id: work.subscribe.packet_id,
            reason_codes: work.codes,
            properties: ReasonProperties::default(),
        };
        // [MQTT-3.3.1-9]: the retained messages follow the SUBACK.
        self.send_or_fail(conn, now, &Packet::SubAck(suback));
        if self.conns[conn as usize].session.is_none() {
            return; // the SUBACK did not fit the client's Maximum Packet Size
        }
        for request in work.retained {
            self.send_retained(session, &request, now);
        }
        self.drain_inbuf(conn, now);
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
        let conn = self.sessions[session as usize]
            .conn
            .expect("subscribing sessions are connected");
        let marked = self.authorize_subscription(conn, parsed)?;
        let s = &self.sessions[session as usize];
        let text = topic::subscription_text(&f.filter);
        let is_new = !s.subscriptions.contains(&text);
        if is_new && s.subscriptions.len() >= self.settings.broker.subscriptions_max {
            return Err(ReasonCode::QuotaExceeded);
        }
        if self.journal.full() && self.persistent(session) {
            // A durable subscription cannot be promised while the journal cannot grow.
            return Err(ReasonCode::QuotaExceeded);
        }
        let share = self.route_to(session, parsed, f.options, id);
        if self.persistent(session) {
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
        self.set_mark(session, &text, marked);
        Ok(Added { is_new })
    }

    /// Puts a session's subscription where routing finds it: the local trie, or the members
    /// of its shared group, whose local id it returns.
    pub(super) fn route_to(
        &mut self,
        session: SessionIdx,
        parsed: ParsedFilter<'_>,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    ) -> Option<ShareId> {
        match parsed.share_group {
            None => {
                self.add_plain(session, parsed.filter, LocalSub { options, id });
                None
            }
            Some(group) => Some(self.add_member(session, group, parsed.filter, options, id)),
        }
    }

    fn add_plain(&mut self, session: SessionIdx, filter: &str, sub: LocalSub) {
        let leaf = self.subs.get_or_insert_with(filter, Default::default);
        let first = leaf.is_empty();
        leaf.insert(session, sub);
        if first {
            self.announce(filter, None, true);
        }
    }

    fn add_member(
        &mut self,
        session: SessionIdx,
        group: &str,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    ) -> ShareId {
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
            return share;
        }
        let share = self.shares.insert(ShareGroup {
            key: key.clone(),
            members: vec![member],
            next: 0,
        }) as u32;
        self.share_index.insert(key.clone(), share);
        // This shard counts among the shards with members, for the round robin of its own publishes.
        self.apply_interest(self.id, filter, Some(&key), true);
        self.announce(filter, Some(key), true);
        share
    }

    /// Tells every other shard, before this returns, that this shard gained (`add`) or lost its
    /// subscribers on a filter or a share.
    fn announce(&self, filter: &str, share: Option<ShareKey>, add: bool) {
        if self.shard_count == 1 {
            return;
        }
        self.board.post(&InterestChange {
            from: self.id,
            filter: filter.into(),
            share,
            add,
        });
    }

    /// Records that shard `from` has (or no longer has) subscribers on `filter` / the share `key`.
    pub(super) fn apply_interest(
        &mut self,
        from: ShardId,
        filter: &str,
        key: Option<&ShareKey>,
        add: bool,
    ) {
        self.interest
            .get_or_insert_with(filter, Interest::default)
            .apply(from, key, add);
        self.interest.remove_if(filter, Interest::is_empty);
    }

    /// Applies the interest changes other shards posted since the last call. Called before
    /// anything reads the interest trie to route: this load is where a PUBLISH takes effect.
    pub(super) fn catch_up_interest(&mut self) {
        let posted = self.board.posted(self.id);
        if posted == self.interest_applied {
            return;
        }
        self.interest_applied = posted;
        let mut changes = std::mem::take(&mut self.interest_changes);
        self.board.take(self.id, &mut changes);
        for c in changes.drain(..) {
            self.apply_interest(c.from, &c.filter, c.share.as_ref(), c.add);
        }
        self.interest_changes = changes;
    }

    /// Removes the session's subscription `text` (journaled, and from the tries and the other
    /// shards' interest); false when it has none.
    pub(super) fn unsubscribe(&mut self, session: SessionIdx, text: &str, now: Instant) -> bool {
        let Some(sub) = self.sessions[session as usize].subscriptions.remove(text) else {
            return false;
        };
        self.set_mark(session, text, false);
        if self.persistent(session) {
            let client_id = &self.sessions[session as usize].client_id;
            self.journal.record(Record::Unsubscribed {
                client_id,
                filter: &sub.text,
            });
        }
        self.drop_subscription(session, &sub, now);
        true
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, now: Instant, unsubscribe: Unsubscribe) {
        let session = self.conns[conn as usize].session.expect("connected");
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let text = topic::subscription_text(filter);
            codes.push(if self.unsubscribe(session, &text, now) {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reason_codes: codes,
            properties: ReasonProperties::default(),
        };
        self.send_or_fail(conn, now, &Packet::UnsubAck(unsuback));
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
                self.announce(filter, None, false);
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
            self.announce(filter, Some(key.clone()), false);
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
