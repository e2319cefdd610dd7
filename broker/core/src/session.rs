//! An MQTT session: what outlives a connection. Subscriptions, the delivery state (queue and
//! in-flight window), the will waiting to be published, and when the session expires.
//!
//! The session of a client id lives on the shard that owns that client id, so takeover, resume
//! and expiry never cross cores.

use std::num::NonZeroU32;
use std::time::Instant;

use ironsight_codec::{ByteString, Bytes, MessageProperties, QoS, SubscriptionOptions};

use crate::conn::ConnId;
use crate::delivery::{Delivery, QueueBehavior, ShareId};
use crate::message::SessionUid;

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
}

#[derive(Debug)]
pub struct Session {
    pub client_id: Box<str>,
    /// Bumped when the slot is reused, for timers that refer to a session by index.
    pub generation: u32,
    pub conn: Option<ConnId>,
    /// Session Expiry Interval in force; 0 ends the session with its connection.
    pub expiry_s: u32,
    /// While disconnected: when the session ends (`None`: never).
    pub expires_at: Option<Instant>,
    pub will: Option<Box<Will>>,
    pub subscriptions: Vec<Subscription>,
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
            generation,
            conn: None,
            expiry_s: 0,
            expires_at: None,
            will: None,
            subscriptions: Vec::new(),
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
        self.subscriptions.iter().find(|s| &*s.text == text)
    }

    /// Frees the delivery state when nothing is pending, so an idle session stays small.
    pub fn shrink(&mut self) {
        if self.delivery.as_ref().is_some_and(|d| d.is_idle()) {
            self.delivery = None;
        }
        if self.subscriptions.capacity() > self.subscriptions.len() * 2 {
            self.subscriptions.shrink_to_fit();
        }
    }
}
