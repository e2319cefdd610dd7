//! Messages from other shards.

use std::time::Instant;

use super::Shard;
use crate::routing::ShardMsg;

impl Shard {
    /// Applies one message from another shard.
    pub fn remote(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish {
                msg,
                plain,
                shares,
                retained,
                ack,
            } => {
                let mark = self.journal_mark();
                if retained {
                    self.store_retained(&msg);
                }
                // A retained message comes to every shard. Subscribers here that it found no
                // interest of when it was routed subscribed after that and before this update
                // reached the replica: they missed it in both, so they get it now, live.
                let plain = plain || retained;
                let mut rejected = plain && self.deliver_plain(now, &msg).rejected;
                for key in &shares {
                    rejected |= self.deliver_shared(now, key, &msg, 0).rejected;
                }
                if let Some(token) = ack {
                    // Told once what the deliveries stored here (and the retained record, if
                    // this shard journals the topic) is durable: the publisher's
                    // acknowledgement waits for it.
                    let outcome = ShardMsg::PublishOutcome { token, rejected };
                    self.send_outcome(msg.origin_shard(), outcome, mark);
                }
            }
            ShardMsg::PublishOutcome { token, rejected } => self.publish_outcome(token, rejected),
            ShardMsg::Redispatch {
                share,
                messages,
                hops,
            } => {
                if self.share_index.contains_key(&share) {
                    for out in messages {
                        self.deliver_shared(now, &share, &out.msg, hops);
                    }
                } else {
                    self.forward_shared(share, messages, hops);
                }
            }
        }
    }
}
