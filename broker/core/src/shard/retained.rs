//! The retained store: the last retained message of every topic ([MQTT-3.3.1-5]), kept up to
//! date by every retained PUBLISH and read by every SUBSCRIBE ([MQTT-3.3.1-9]).
//!
//! Every shard holds a full replica, so a subscribe never waits for another core: a retained
//! message published here updates this replica and travels to the others in its
//! `ShardMsg::Publish` (`retained`). Updates of one topic published on different shards reach
//! the shards in different orders; each carries a version (publish time, then message id,
//! [`crate::message::Message::version`]) and the newest wins on every shard, a clearing
//! included: a clearing is remembered for [`CLEARED_KEEP`] against older updates still on their
//! way.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use ironsight_codec::{ByteString, SubscriptionOptions};

use super::Shard;
use crate::journal::{Journal, MemoryOnly, Record};
use crate::message::{RetainedVersion, SessionUid, SharedMessage};
use crate::queue::{Offer, SubIds};
use crate::routing::delivery_qos;
use crate::session::SessionIdx;
use crate::tree::TopicTree;

/// How long a cleared retained topic is remembered: a clearing only has to outlive the updates
/// still travelling between shards.
const CLEARED_KEEP: Duration = Duration::from_secs(60);

/// This shard's replica of the retained messages.
#[derive(Default)]
pub(super) struct RetainedStore {
    /// The retained message of each topic that has one.
    messages: TopicTree<SharedMessage>,
    /// Recently cleared topics and the version that cleared them, so that an older update
    /// arriving later from another shard does not bring the message back.
    cleared: HashMap<ByteString, RetainedVersion>,
}

impl RetainedStore {
    /// Topics with a retained message.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Applies a retained PUBLISH (an empty payload clears the topic, [MQTT-3.3.1-6]) unless a
    /// newer version of the topic is known. Holds at most `max` topics; a new topic beyond that
    /// is not stored. Every change is handed to `journal`.
    fn store(&mut self, msg: &SharedMessage, max: usize, journal: &mut dyn Journal) {
        let version = msg.version();
        let newer_known = self
            .cleared
            .get(&msg.topic)
            .is_some_and(|&cleared| cleared > version)
            || self
                .messages
                .get(&msg.topic)
                .is_some_and(|stored| stored.version() > version);
        if newer_known {
            return;
        }
        if msg.payload.is_empty() {
            if self.cleared.len() < max {
                self.cleared.insert(msg.topic.clone(), version);
            }
            if self.messages.remove(&msg.topic).is_some() {
                journal.record(Record::Retained {
                    topic: &msg.topic,
                    message: msg,
                });
            }
            return;
        }
        self.cleared.remove(&msg.topic);
        if let Some(stored) = self.messages.get_mut(&msg.topic) {
            *stored = msg.clone();
            journal.record(Record::Retained {
                topic: &msg.topic,
                message: msg,
            });
        } else if self.messages.len() < max {
            self.messages.get_or_insert_with(&msg.topic, || msg.clone());
            journal.record(Record::Retained {
                topic: &msg.topic,
                message: msg,
            });
        } else {
            tracing::warn!(topic = %msg.topic, max = self.messages.len(), "retained store full; message not retained");
        }
    }

    /// The unexpired retained messages whose topics `filter` matches, less those published by
    /// `excluded` (a No Local subscriber, [MQTT-3.8.3-3]).
    fn matching(
        &self,
        filter: &str,
        now: Instant,
        excluded: Option<SessionUid>,
    ) -> Vec<SharedMessage> {
        let mut found = Vec::new();
        self.messages.for_each_in_filter(filter, &mut |_, msg| {
            let own = excluded == Some(msg.origin);
            if !msg.is_expired(now) && !own {
                found.push(msg.clone());
            }
        });
        found
    }

    /// Takes up a retained message recovered from the journal, unless a newer one of its
    /// topic is known.
    pub(super) fn restore(&mut self, msg: &SharedMessage) {
        let newer = self
            .messages
            .get(&msg.topic)
            .is_some_and(|stored| stored.version() >= msg.version());
        if !newer {
            *self.messages.get_or_insert_with(&msg.topic, || msg.clone()) = msg.clone();
        }
    }

    /// The first retained message in a slot at `from` or after, with its slot: a walk over the
    /// store in slices, each taking up where the last one ended.
    pub(super) fn next_from(&self, from: usize) -> Option<(usize, &SharedMessage)> {
        self.messages.value_from(from)
    }

    /// Forgets the clearings older than [`CLEARED_KEEP`] (on the shard's tick).
    pub(super) fn forget_cleared(&mut self, now: Instant) {
        self.cleared
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < CLEARED_KEEP);
    }
}

/// A subscription that asked for the retained messages of its filter, sent after the SUBACK.
#[derive(Debug)]
pub(super) struct RetainedRequest {
    pub filter: Box<str>,
    pub options: SubscriptionOptions,
    pub id: Option<NonZeroU32>,
}

impl Shard {
    /// Keeps this shard's replica up to date with a retained PUBLISH, from a client of this
    /// shard or from another shard.
    pub(super) fn store_retained(&mut self, msg: &SharedMessage) {
        let max = self.settings.broker.retained_max;
        // Every shard keeps a replica; the journal keeps one copy of each topic: its owner
        // shard's, which sees every update of the topic in version order (`retained_owner`).
        let mut memory_only = MemoryOnly;
        let journal: &mut dyn Journal = if self.retained_owner(&msg.topic) {
            &mut self.journal
        } else {
            &mut memory_only
        };
        self.retained.store(msg, max, journal);
    }

    /// Whether this shard journals the retained message of `topic`. One shard per topic, by
    /// the hash that places client ids: a topic's updates then live in one journal, so that a
    /// clearing and the message it cleared are compacted together, never one without the other.
    pub(super) fn retained_owner(&self, topic: &str) -> bool {
        self.owner_of(topic) == self.id
    }

    /// Delivers the retained messages `request` asked for. `request.filter` is a plain filter (a
    /// shared subscription gets no retained messages), checked when it was subscribed; a
    /// message whose publisher may no longer publish there is withheld.
    pub(super) fn send_retained(
        &mut self,
        session: SessionIdx,
        request: &RetainedRequest,
        now: Instant,
    ) {
        let uid = self.sessions[session as usize].uid(self.id);
        let excluded = request.options.no_local.then_some(uid);
        for msg in self.retained.matching(&request.filter, now, excluded) {
            if !self.publisher_may_still(&msg) {
                continue;
            }
            let qos = delivery_qos(msg.qos, request.options.qos);
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
}
