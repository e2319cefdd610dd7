//! An MQTT session: what outlives a connection. Subscriptions, the delivery state (queue and
//! in-flight window), the will waiting to be published, and when the session expires.
//!
//! The session of a client id lives on the shard that owns that client id, so takeover, resume
//! and expiry never cross cores.

use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;
use ironsight_codec::{ByteString, Bytes, MessageProperties, QoS, SubscriptionOptions};

use crate::auth::Principal;
use crate::conn::ConnId;
use crate::message::SessionUid;
use crate::notification::Marks;
use crate::policy::Publisher;
use crate::queue::{Delivery, QueueBehavior, ShareId};

pub type SessionIdx = u32;

/// Session Expiry Interval meaning "never expires" (0xFFFFFFFF, §3.1.2.11.2).
pub const EXPIRY_NEVER: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub struct Subscription {
    /// The filter as the client wrote it, share prefix included: the key for UNSUBSCRIBE.
    pub text: Box<str>,
    pub options: SubscriptionOptions,
    pub id: Option<NonZeroU32>,
    /// Set for a shared subscription: the group this session is a member of.
    pub share: Option<ShareId>,
}

/// A session's subscriptions, keyed by their text: adding, replacing or removing one costs a hash
/// of its filter, never a walk over the session's other subscriptions (one SUBSCRIBE may name
/// hundreds of thousands of filters, each checked against what the session holds). Allocated with
/// the first subscription, so a session without any costs one word.
#[derive(Debug, Default)]
pub struct Subscriptions(Option<Box<SubscriptionTable>>);

#[derive(Debug, Default)]
struct SubscriptionTable {
    /// Seeded per table: a client chooses its filters, so it must not be able to choose their
    /// hashes too and turn lookups into walks.
    hasher: foldhash::fast::RandomState,
    entries: HashTable<Subscription>,
    /// Which of them are marked for disconnected-client notification, and what arrived on
    /// them while the session was disconnected: kept with the subscriptions, so that a
    /// session without any pays nothing for them.
    marks: Marks,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |t| t.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The subscription whose text (see `topic::subscription_text`) is `text`.
    pub fn get(&self, text: &str) -> Option<&Subscription> {
        let table = self.0.as_ref()?;
        let hash = table.hasher.hash_one(text);
        table.entries.find(hash, |s| *s.text == *text)
    }

    pub fn contains(&self, text: &str) -> bool {
        self.get(text).is_some()
    }

    /// Adds `sub`, or replaces the subscription with the same text; returns the one replaced.
    pub fn insert(&mut self, sub: Subscription) -> Option<Subscription> {
        let table = self.0.get_or_insert_with(Box::default);
        let hasher = &table.hasher;
        let hash = hasher.hash_one(&*sub.text);
        match table
            .entries
            .entry(hash, |s| s.text == sub.text, |s| hasher.hash_one(&*s.text))
        {
            hashbrown::hash_table::Entry::Occupied(mut entry) => {
                Some(std::mem::replace(entry.get_mut(), sub))
            }
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert(sub);
                None
            }
        }
    }

    pub fn remove(&mut self, text: &str) -> Option<Subscription> {
        let table = self.0.as_mut()?;
        let hash = table.hasher.hash_one(text);
        let entry = table.entries.find_entry(hash, |s| *s.text == *text).ok()?;
        Some(entry.remove().0)
    }

    /// Marks the subscription `text` (which the session has) for disconnected-client
    /// notification, or takes its mark away.
    pub fn mark(&mut self, text: &str, marked: bool) {
        if let Some(table) = self.0.as_mut() {
            table.marks.set(text, marked);
        }
    }

    pub fn marks(&self) -> Option<&Marks> {
        self.0.as_ref().map(|t| &t.marks)
    }

    pub fn marks_mut(&mut self) -> Option<&mut Marks> {
        self.0.as_mut().map(|t| &mut t.marks)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.0.iter().flat_map(|t| t.entries.iter())
    }

    /// Gives back memory a shrinking set no longer needs, all of it when none is left.
    fn shrink(&mut self) {
        let Some(table) = self.0.as_mut() else {
            return;
        };
        if table.entries.is_empty() && !table.marks.listed {
            // A listed session keeps its (empty) marks until its round takes it off the
            // list, so that it is never listed twice.
            self.0 = None;
        } else if table.entries.capacity() > table.entries.len() * 2 {
            let hasher = &table.hasher;
            table.entries.shrink_to_fit(|s| hasher.hash_one(&*s.text));
        }
    }
}

/// A will from CONNECT, kept until the connection ends cleanly or the will is published.
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub delay_s: u32,
    pub properties: MessageProperties,
    /// While the session is disconnected: when the will is published.
    pub publish_at: Option<Instant>,
    /// For a retained will: who publishes it, kept with the retained message.
    pub publisher: Option<Arc<Publisher>>,
}

#[derive(Debug)]
pub struct Session {
    pub client_id: Box<str>,
    /// Who holds the session: the user its last connection authenticated as (`None`: an
    /// endpoint without authentication). Another user may not take it over.
    pub principal: Option<Arc<Principal>>,
    /// Bumped when the slot is reused, for timers that refer to a session by index.
    pub generation: u32,
    pub conn: Option<ConnId>,
    /// Session Expiry Interval in force; 0 ends the session with its connection.
    pub expiry_s: u32,
    /// While disconnected: when the session ends (`None`: never).
    pub expires_at: Option<Instant>,
    pub will: Option<Box<Will>>,
    pub subscriptions: Subscriptions,
    /// Allocated on the first QoS > 0 message or the first queued one.
    pub delivery: Option<Box<Delivery>>,
    pub queue_max: u32,
    pub queue_behavior: QueueBehavior,
    /// Fan-out bookkeeping: the routing pass that last touched this session, and its slot there.
    pub stamp: u64,
    pub stamp_slot: u32,
}

impl Session {
    /// Identifies the session across shards, for No Local: its shard and its generation, which
    /// is unique within the shard.
    pub fn uid(&self, shard: u16) -> SessionUid {
        crate::message::session_uid(shard, self.generation)
    }

    pub fn new(client_id: Box<str>, generation: u32) -> Session {
        Session {
            client_id,
            principal: None,
            generation,
            conn: None,
            expiry_s: 0,
            expires_at: None,
            will: None,
            subscriptions: Subscriptions::default(),
            delivery: None,
            queue_max: 0,
            queue_behavior: QueueBehavior::RejectNewMessages,
            stamp: 0,
            stamp_slot: 0,
        }
    }

    pub fn delivery(&mut self) -> &mut Delivery {
        self.delivery.get_or_insert_with(Box::default)
    }

    pub fn subscription(&self, text: &str) -> Option<&Subscription> {
        self.subscriptions.get(text)
    }

    /// Frees the delivery state when nothing is pending, so an idle session stays small.
    pub fn shrink(&mut self) {
        if self.delivery.as_ref().is_some_and(|d| d.is_idle()) {
            self.delivery = None;
        }
        self.subscriptions.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str, qos: QoS) -> Subscription {
        Subscription {
            text: text.into(),
            options: SubscriptionOptions::with_qos(qos),
            id: None,
            share: None,
        }
    }

    /// Proves the table answers by text: a second subscription to the same text replaces the
    /// first, removal takes exactly the one named, and an emptied table gives its memory back.
    #[test]
    fn subscriptions_are_keyed_by_their_text() {
        let mut subs = Subscriptions::default();
        assert!(subs.get("a").is_none() && subs.remove("a").is_none());
        for i in 0..10_000 {
            assert!(subs
                .insert(sub(&format!("f/{i}"), QoS::AtMostOnce))
                .is_none());
        }
        let replaced = subs.insert(sub("f/7", QoS::ExactlyOnce));
        assert_eq!(replaced.map(|s| s.options.qos), Some(QoS::AtMostOnce));
        assert_eq!(subs.len(), 10_000);
        assert_eq!(
            subs.get("f/7").map(|s| s.options.qos),
            Some(QoS::ExactlyOnce)
        );
        assert!(subs.contains("f/9999") && !subs.contains("f/10000") && !subs.contains("f/"));
        assert_eq!(subs.remove("f/7").map(|s| s.text), Some("f/7".into()));
        assert!(subs.remove("f/7").is_none(), "removed once");
        assert_eq!(subs.len(), 9_999);
        assert_eq!(subs.iter().count(), 9_999);
        for i in (0..10_000).filter(|&i| i != 7) {
            assert!(subs.remove(&format!("f/{i}")).is_some(), "f/{i}");
        }
        subs.shrink();
        assert!(subs.0.is_none(), "an empty table is freed");
    }
}
