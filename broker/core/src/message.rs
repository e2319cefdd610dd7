//! The application message as the broker holds it: published once, shared by every subscriber
//! queue, in-flight window and shard it reaches (an `Arc`, sent across cores without copying).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironsight_codec::{ByteString, Bytes, MessageProperties, QoS};

use crate::policy::Publisher;

/// Identifies the session that published a message, for No Local ([MQTT-3.8.3-3]). Unique across
/// shards: the shard number is in the high bits, so a message also tells which shard it came from.
pub type SessionUid = u64;

const SHARD_SHIFT: u32 = 48;

pub fn session_uid(shard: u16, generation: u32) -> SessionUid {
    (u64::from(shard) << SHARD_SHIFT) | u64::from(generation)
}

/// A message id unique in the broker: the shard's `n`-th message.
pub fn message_id(shard: u16, n: u64) -> u64 {
    (u64::from(shard) << SHARD_SHIFT) | (n & ((1 << SHARD_SHIFT) - 1))
}

/// The counter part of a message id: what `message_id` was given as `n`.
pub fn message_n(id: u64) -> u64 {
    id & ((1 << SHARD_SHIFT) - 1)
}

pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    /// QoS as published; a delivery uses the minimum of this and the subscription's.
    pub qos: QoS,
    /// RETAIN as published; deliveries clear it unless Retain As Published is set.
    pub retain: bool,
    /// Passed through to v5 subscribers untouched, except the expiry interval, which is
    /// recomputed from `expires_at` at each delivery ([MQTT-3.3.2-6]).
    pub properties: MessageProperties,
    pub expires_at: Option<Instant>,
    /// When the publishing shard received it: with `id`, orders retained updates.
    pub published_at: Instant,
    pub origin: SessionUid,
    /// Unique in the broker (the publishing shard in the high bits), for the journal.
    pub id: u64,
    /// Who published it, for a retained message only: its right to publish there is checked
    /// again whenever it is delivered from the retained store.
    pub publisher: Option<Arc<Publisher>>,
}

pub type SharedMessage = Arc<Message>;

/// See [`Message::version`].
pub type RetainedVersion = (Instant, u64);

impl Message {
    /// Builds a message, turning the relative expiry interval into a deadline.
    pub fn new(
        now: Instant,
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: MessageProperties,
        origin: SessionUid,
    ) -> Message {
        let expires_at = properties
            .message_expiry_interval_s
            .map(|s| now + Duration::from_secs(u64::from(s)));
        Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at,
            published_at: now,
            origin,
            id: 0,
            publisher: None,
        }
    }

    /// Orders updates of one retained topic the same way on every shard: by publish time, then
    /// by id (whose high bits are the publishing shard).
    pub fn version(&self) -> RetainedVersion {
        (self.published_at, self.id)
    }

    /// The shard of the session that published this message.
    pub fn origin_shard(&self) -> u16 {
        (self.origin >> SHARD_SHIFT) as u16
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The Message Expiry Interval to send now: the time left, rounded up so that a message
    /// that is still deliverable never goes out with 0.
    pub fn remaining_expiry_s(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
    }

    /// Bytes this message holds beyond the `Arc` itself, for memory accounting.
    pub fn weight(&self) -> usize {
        self.topic.len() + self.payload.len() + std::mem::size_of::<Message>()
    }
}

impl fmt::Debug for Message {
    // Payloads are customer data: logs show the topic and the length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &&*self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(now: Instant, expiry: Option<u32>) -> Message {
        let properties = MessageProperties {
            message_expiry_interval_s: expiry,
            ..Default::default()
        };
        Message::new(
            now,
            "t".into(),
            Bytes::from_static(b"secret"),
            QoS::AtLeastOnce,
            false,
            properties,
            1,
        )
    }

    #[test]
    fn expiry_counts_down_from_publish_time() {
        let t0 = Instant::now();
        let m = message(t0, Some(10));
        assert_eq!(m.remaining_expiry_s(t0), Some(10));
        assert_eq!(
            m.remaining_expiry_s(t0 + Duration::from_millis(3500)),
            Some(7)
        );
        assert!(!m.is_expired(t0 + Duration::from_millis(9999)));
        assert!(m.is_expired(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn no_expiry_never_expires() {
        let t0 = Instant::now();
        let m = message(t0, None);
        assert_eq!(m.remaining_expiry_s(t0), None);
        assert!(!m.is_expired(t0 + Duration::from_secs(1 << 30)));
    }

    #[test]
    fn debug_hides_the_payload() {
        let text = format!("{:?}", message(Instant::now(), None));
        assert!(text.contains("payload_len: 6"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
