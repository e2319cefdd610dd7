//! Where a durable store plugs in. Sessions and retained messages live in the shard's memory;
//! every change a restart would have to reproduce is also told to the shard's [`Journal`], in
//! the order it happened. ironsight runs with [`MemoryOnly`] today (state ends with the process,
//! as the issue that introduced sessions asked); a journal on disk implements this trait and
//! replays its records at start, without changes to the core's logic.
//!
//! What is recorded: sessions that outlive their connection (Session Expiry Interval > 0, or
//! MQTT 3 clean session 0), their subscriptions and will, the QoS 1/2 messages they hold until
//! acknowledged, and retained messages. Sessions that end with their connection are not.

use std::num::NonZeroU32;

use ironsight_codec::{QoS, SubscriptionOptions};

use crate::message::Message;
use crate::session::Will;

/// One change to durable state. Borrowed: recording allocates nothing.
#[derive(Debug)]
pub enum Record<'a> {
    /// The session exists (created, resumed, or its expiry changed) with this expiry.
    Session {
        client_id: &'a str,
        expiry_s: u32,
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
    /// The session's will (or none).
    Will {
        client_id: &'a str,
        will: Option<&'a Will>,
    },
    /// The session holds this QoS 1/2 message until it is acknowledged.
    Stored {
        client_id: &'a str,
        message: &'a Message,
        qos: QoS,
    },
    /// The session no longer holds message `id` (acknowledged, discarded, expired or moved).
    Released {
        client_id: &'a str,
        id: u64,
    },
    /// The retained message of `topic` (none: cleared).
    Retained {
        topic: &'a str,
        message: Option<&'a Message>,
    },
}

pub trait Journal {
    fn record(&mut self, record: Record<'_>);

    /// Whether a record is durable when `record` returns (memory only: there is nothing to
    /// wait for). A journal on disk answers false and reports durability through
    /// `Shard::durable`; until then the shard holds what the records promise.
    fn synchronous(&self) -> bool;
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
