//! Authorisation on the shard: a client's facts handed to the policies ([`crate::policy`]),
//! and what the shard does with their answers: refuse a publish or a subscription, drop what a
//! resumed session may no longer have, withhold a retained message whose publisher lost the
//! right to publish it.
//!
//! Cost: nothing is cached per connection. A policy's filters are a few comparisons, cheaper
//! than the memory a cache would add to every idle connection, and a decision allocates
//! nothing; the demo policy (`Topic: *` for everyone) decides a publish in two branches. Only a
//! refusal builds its explanation for the log.

use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{PacketId, ReasonCode};

use super::Shard;
use crate::auth::Principal;
use crate::conn::{ConnId, Connection};
use crate::message::Message;
use crate::notification;
use crate::policy::{self, Action, Publisher, ShareAction, Subject};
use crate::routing::share_key;
use crate::session::SessionIdx;
use crate::topic::{self, ParsedFilter};

/// A client as the policies see it: its connection's facts, and the client id and user it
/// connects as (the session may not exist yet).
pub(super) fn subject_of<'a>(
    c: &'a Connection,
    client_id: &'a str,
    principal: Option<&'a Principal>,
) -> Subject<'a> {
    Subject {
        client_id,
        principal,
        common_name: c
            .certificate
            .as_deref()
            .map(|cert| &*cert.common_name)
            .filter(|cn| !cn.is_empty()),
        addr: c.peer.ip,
    }
}

impl Shard {
    /// The client of a connected connection.
    pub(super) fn subject(&self, conn: ConnId) -> Subject<'_> {
        let c = &self.conns[conn as usize];
        let s = &self.sessions[c.session.expect("a connected connection has a session") as usize];
        subject_of(c, &s.client_id, s.principal.as_deref())
    }

    /// Decides a PUBLISH (or will) topic: the time-to-live cap of the first TopicPolicy that
    /// allows it (`None`: unlimited), or `Err` after logging why not. Nobody but the broker
    /// publishes on `$SYS`, whatever the policies say.
    pub(super) fn authorize_publish(
        &self,
        conn: ConnId,
        s: &Subject,
        topic: &str,
    ) -> Result<Option<u32>, ()> {
        if policy::is_sys(topic) {
            tracing::debug!(
                conn,
                client_id = s.client_id,
                topic,
                "publish refused: only the broker publishes on $SYS"
            );
            return Err(());
        }
        let rules = &self.endpoint(conn).topic_rules;
        match policy::publish_rule(rules, topic, s) {
            Some(rule) => Ok(rule.message_ttl_max_s),
            None => {
                let why = policy::explain(rules, Action::Publish, topic, s);
                tracing::debug!(conn, client_id = s.client_id, topic, %why, "publish refused");
                Err(())
            }
        }
    }

    /// Decides a subscription: the filter must be covered by the TopicPolicies, and a shared
    /// one's group allowed by a SubscriptionPolicy where the endpoint lists any (Receive to
    /// join a group, Control to create it). A filter that reaches the disconnected-client
    /// notifications takes Amlen's consumer rules too ([`Shard::authorize_notified`]).
    /// Returns whether the subscription is marked for disconnected-client notification.
    pub(super) fn authorize_subscription(
        &mut self,
        conn: ConnId,
        parsed: ParsedFilter,
    ) -> Result<bool, ReasonCode> {
        let share_rules = !self.endpoint(conn).subscription_rules.is_empty();
        let exists = match parsed.share_group {
            Some(group) if share_rules => self.share_exists(group, parsed.filter),
            _ => false,
        };
        let s = self.subject(conn);
        let endpoint = self.endpoint(conn);
        let rules = &endpoint.topic_rules;
        if !policy::may_subscribe(rules, parsed.filter, &s) {
            // Which part is not allowed: the filter, or the parent level a `/#` also matches.
            let part = if policy::may_receive(rules, parsed.filter, &s) {
                parsed.filter.strip_suffix("/#").unwrap_or(parsed.filter)
            } else {
                parsed.filter
            };
            let why = policy::explain(rules, Action::Subscribe, part, &s);
            tracing::debug!(conn, client_id = s.client_id, filter = parsed.filter, part, %why, "subscribe refused: the filter reaches topics no policy allows");
            return Err(ReasonCode::NotAuthorized);
        }
        let marked = parsed.share_group.is_none() && policy::notifies(rules, parsed.filter, &s);
        self.authorize_notified(conn, parsed)?;
        let Some(group) = parsed.share_group.filter(|_| share_rules) else {
            return Ok(marked);
        };
        let action = if exists {
            ShareAction::Receive
        } else {
            ShareAction::Control
        };
        if policy::share_rule(&endpoint.subscription_rules, group, action, &s).is_none() {
            tracing::debug!(
                conn,
                client_id = s.client_id,
                group,
                ?action,
                "subscribe refused: no SubscriptionPolicy allows it for this shared subscription"
            );
            return Err(ReasonCode::NotAuthorized);
        }
        Ok(marked)
    }

    /// Amlen's rules for a consumer of `$SYS/DisconnectedClientNotification` (any filter that
    /// matches it): the policies granted it already (`*` grants no `$SYS`); it may not be a
    /// shared subscription (0x9E), since a gateway's members would each see a part; and its
    /// session must end with its connection (0x83), since notifications are for now and are
    /// kept in no journal.
    fn authorize_notified(&self, conn: ConnId, parsed: ParsedFilter) -> Result<(), ReasonCode> {
        if !topic::filter_matches(parsed.filter, notification::TOPIC) {
            return Ok(());
        }
        let session = self.conns[conn as usize].session.expect("connected");
        let client_id = &self.sessions[session as usize].client_id;
        if parsed.share_group.is_some() {
            tracing::debug!(conn, %client_id, filter = parsed.filter, "subscribe refused: no shared subscription receives the disconnected-client notifications");
            return Err(ReasonCode::SharedSubscriptionsNotSupported);
        }
        if self.persistent(session) {
            tracing::debug!(conn, %client_id, filter = parsed.filter, "subscribe refused: the disconnected-client notifications go to sessions that end with their connection only");
            return Err(ReasonCode::ImplementationSpecificError);
        }
        Ok(())
    }

    /// Whether the shared subscription has members anywhere in the broker.
    fn share_exists(&mut self, group: &str, filter: &str) -> bool {
        let key = share_key(group, filter);
        if self.share_index.contains_key(&key) {
            return true;
        }
        self.catch_up_interest();
        self.interest
            .get(filter)
            .is_some_and(|i| i.shares.iter().any(|s| s.key == key))
    }

    /// The publisher of a retained message (or will) published by `session` on `conn`, kept
    /// with the message.
    pub(super) fn publisher(&self, conn: ConnId, session: SessionIdx) -> Arc<Publisher> {
        let c = &self.conns[conn as usize];
        let s = &self.sessions[session as usize];
        let subject = subject_of(c, &s.client_id, s.principal.as_deref());
        Arc::new(Publisher {
            endpoint: c.endpoint,
            client_id: s.client_id.clone(),
            principal: s.principal.clone(),
            common_name: subject.common_name.map(Into::into),
            addr: subject.addr,
        })
    }

    /// Whether a retained message may still be delivered from the store: its publisher must
    /// still be allowed to publish there by the policies in force. Checked on retained
    /// delivery only, never on the live fan-out. A message without a publisher is the
    /// broker's own.
    pub(super) fn publisher_may_still(&self, msg: &Message) -> bool {
        let Some(p) = &msg.publisher else {
            return true;
        };
        let Some(endpoint) = self.settings.endpoints.get(usize::from(p.endpoint)) else {
            return false;
        };
        let allowed = !policy::is_sys(&msg.topic)
            && policy::publish_rule(&endpoint.topic_rules, &msg.topic, &p.subject()).is_some();
        if !allowed {
            tracing::debug!(topic = %msg.topic, publisher = %p.client_id, "retained message withheld: its publisher may no longer publish there");
        }
        allowed
    }

    /// A session checked against who is connected on `conn` and the policies in force (when it
    /// is resumed, and when the policies change): its subscriptions that are no longer allowed
    /// are removed, and the messages it holds on topics it may no longer receive are dropped:
    /// queued ones, and ones in flight that the client does not hold yet (a QoS 2 message past
    /// PUBREC is the client's already). Returns the filters removed and the messages dropped.
    pub(super) fn recheck_session(
        &mut self,
        conn: ConnId,
        session: SessionIdx,
        now: Instant,
    ) -> (Vec<Box<str>>, usize) {
        let texts: Vec<Box<str>> = self.sessions[session as usize]
            .subscriptions
            .iter()
            .map(|sub| sub.text.clone())
            .collect();
        let mut removed = Vec::new();
        for text in texts {
            let split = self.split(&text).expect("stored filters were valid");
            if let Ok(marked) = self.authorize_subscription(conn, split.parts(&text)) {
                self.set_mark(session, &text, marked);
                continue;
            }
            let unsubscribed = self.unsubscribe(session, &text, now);
            assert!(unsubscribed, "listed above");
            removed.push(text);
        }
        let dropped = self.drop_revoked_messages(conn, session);
        for &id in &dropped {
            self.journal_released(session, id);
        }
        (removed, dropped.len())
    }

    /// Takes the messages the session may no longer receive out of its queue and window;
    /// returns their ids.
    fn drop_revoked_messages(&mut self, conn: ConnId, session: SessionIdx) -> Vec<u64> {
        let Shard {
            sessions,
            conns,
            settings,
            ..
        } = self;
        let c = &conns[conn as usize];
        let rules = &settings.endpoints[usize::from(c.endpoint)].topic_rules;
        let s = &mut sessions[session as usize];
        let (client_id, principal) = (s.client_id.clone(), s.principal.clone());
        let subject = subject_of(c, &client_id, principal.as_deref());
        let mut dropped = Vec::new();
        let Some(delivery) = s.delivery.as_mut() else {
            return dropped;
        };
        let revoked = |topic: &str| !policy::may_receive(rules, topic, &subject);
        delivery.queue.retain(|out| {
            let keep = !revoked(&out.msg.topic);
            if !keep {
                dropped.push(out.msg.id);
            }
            keep
        });
        let in_flight: Vec<PacketId> = delivery
            .inflight
            .iter()
            .filter(|f| f.out.as_ref().is_some_and(|out| revoked(&out.msg.topic)))
            .map(|f| f.pid)
            .collect();
        for pid in in_flight {
            if let Some(out) = delivery.drop_inflight(pid) {
                dropped.push(out.msg.id);
            }
        }
        dropped
    }
}
