//! The broker's own messages on `$SYS` topics: the disconnected-client notifications
//! ([`super::notify`]) and the resource statistics the server composes
//! ([`crate::resource_statistics`]). They are routed like a client's, to every shard.

use std::sync::Arc;
use std::time::Instant;

use ironsight_codec::{ByteString, Bytes, MessageProperties, QoS};

use super::Shard;
use crate::message::{session_uid, Message};

impl Shard {
    /// Whether a subscription anywhere in the broker matches `topic`: the broker composes
    /// nothing for a topic nobody reads.
    pub fn anyone_subscribed(&mut self, topic: &str) -> bool {
        self.catch_up_interest();
        let mut any = false;
        self.subs
            .for_each_match(topic, &mut |leaf| any |= !leaf.is_empty());
        self.interest
            .for_each_match(topic, &mut |interest| any |= !interest.shards.is_empty());
        any
    }

    /// Publishes the broker's own QoS 0 `payload` on `topic`, not retained.
    pub fn publish_system(&mut self, now: Instant, topic: &'static str, payload: Bytes) {
        let msg = self.system_message(
            now,
            ByteString::from_static(topic),
            payload,
            QoS::AtMostOnce,
        );
        self.route(now, msg, None);
    }

    /// A message the broker itself publishes, with a message id of this shard's.
    pub(super) fn system_message(
        &mut self,
        now: Instant,
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
    ) -> Arc<Message> {
        // No session published it: generation 0 is never a session's.
        let origin = session_uid(self.id, 0);
        let mut msg = Message::new(
            now,
            topic,
            payload,
            qos,
            false,
            MessageProperties::default(),
            origin,
        );
        msg.id = self.next_message_id();
        Arc::new(msg)
    }
}
