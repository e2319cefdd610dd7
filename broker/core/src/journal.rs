//! Where a durable store plugs in. Sessions and retained messages live in the shard's memory;
//! every change a restart would have to reproduce is also told to the shard's [`Journal`], in
//! the order it happened. ironsight runs with [`MemoryOnly`] today (state ends with the process,
//! as the issue that introduced sessions asked); a journal on disk implements this trait and
//! replays its records at start, without changes to the core's logic.
//!
//! What is recorded: sessions that outlive their connection (Session Expiry Interval > 0, or
//! MQTT 3 clean session 0), their subscriptions and will, the QoS 1/2 messages they hold until
//! acknowledged, the packet ids in flight in both directions, and retained messages. Sessions
//! that end with their connection are not. `docs/store.md` says how a journal on disk keeps
//! them, and what waits for it (`shard/durability.rs`).

use std::num::NonZeroU32;
use std::time::Instant;

use ironsight_codec::{PacketId, QoS, SubscriptionOptions};

use crate::message::SharedMessage;
use crate::queue::QueueBehavior;
use crate::session::Will;

/// One change to durable state. Borrowed: recording allocates nothing. Ids of messages are
/// unique in the broker (`message::message_id`); packet ids are the session's.
#[derive(Debug)]
pub enum Record<'a> {
    /// The session exists (created, resumed, disconnected, or its expiry changed) with this
    /// expiry, belonging to `user_id` (none: anonymous). `connected` says whether a connection
    /// serves it now; a disconnected one ends at `expires_at` (none: never), a deadline the
    /// journal keeps in wall-clock time, so that it passes while the broker is down too. Its
    /// queue holds at most `queue_max` messages, `queue_behavior` deciding which one loses.
    Session {
        client_id: &'a str,
        expiry_s: u32,
        user_id: Option<&'a str>,
        connected: bool,
        expires_at: Option<Instant>,
        queue_max: u32,
        queue_behavior: QueueBehavior,
    },
    /// The session and everything it held are gone.
    SessionEnded {
        client_id: &'a str,
    },
    Subscribed {
        client_id: &'a str,
        filter: &'a str,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    },
    Unsubscribed {
        client_id: &'a str,
        filter: &'a str,
    },
    /// The session's will (or none), with the time it is to be published at while the
    /// session is disconnected.
    Will {
        client_id: &'a str,
        will: Option<&'a Will>,
    },
    /// The session holds this QoS 1/2 message until it is acknowledged, as it is to be
    /// delivered: at `qos`, with RETAIN `retain`, the subscription identifiers `sub_ids`, and
    /// through the shared subscription `share` (its `routing::ShareKey`) if one chose it.
    Stored {
        client_id: &'a str,
        message: &'a SharedMessage,
        qos: QoS,
        retain: bool,
        sub_ids: &'a [NonZeroU32],
        share: Option<&'a str>,
    },
    /// Message `id`, which the session holds, went out under `packet_id`: after a restart it is
    /// sent again under the same id, with DUP.
    Sent {
        client_id: &'a str,
        id: u64,
        packet_id: PacketId,
    },
    /// The session no longer holds message `id` (acknowledged, discarded, expired or moved).
    Released {
        client_id: &'a str,
        id: u64,
    },
    /// The client accepted the QoS 2 message sent under `packet_id` with PUBREC: the message
    /// is the client's now, and the id waits for PUBCOMP (a restart sends PUBREL again).
    PubRecReceived {
        client_id: &'a str,
        packet_id: PacketId,
    },
    /// PUBCOMP: `packet_id` is free again.
    PubCompReceived {
        client_id: &'a str,
        packet_id: PacketId,
    },
    /// The client's QoS 2 message under `packet_id` was accepted and answered PUBREC: a
    /// PUBLISH with this id is a duplicate until PUBREL, across a restart too.
    InboundQos2 {
        client_id: &'a str,
        packet_id: PacketId,
    },
    /// PUBREL: the client's `packet_id` names a new message again.
    InboundReleased {
        client_id: &'a str,
        packet_id: PacketId,
    },
    /// The retained message of `topic` is now `message`; an empty payload clears the topic.
    /// Recorded by the shard the message was published on only: every shard holds a replica,
    /// the journal one copy. Updates of one topic from different shards are ordered by the
    /// message's version (`Message::version`), as the replicas order them.
    Retained {
        topic: &'a str,
        message: &'a SharedMessage,
    },
}

pub trait Journal {
    fn record(&mut self, record: Record<'_>);

    /// Whether a record is durable when `record` returns (memory only: there is nothing to
    /// wait for). A journal on disk answers false and reports durability through
    /// `Shard::durable`; until then the shard holds what the records promise.
    fn synchronous(&self) -> bool;

    /// Whether the journal cannot grow now (its disk is full, for any shard: they share it).
    /// While it cannot, the shard refuses what would promise new durable state, with Quota
    /// exceeded (0x97): a QoS 1/2 PUBLISH, a durable session's SUBSCRIBE, a CONNECT asking for
    /// a durable session. QoS 0 goes on, what was acknowledged is on disk already, and records
    /// that cannot be refused (an acknowledgement's release, a disconnection) wait in memory.
    fn full(&self) -> bool {
        false
    }
}

/// State lives in memory only and ends with the process.
#[derive(Debug, Default)]
pub struct MemoryOnly;

impl Journal for MemoryOnly {
    fn record(&mut self, _record: Record<'_>) {}

    fn synchronous(&self) -> bool {
        true
    }
}
