//! What one shard knows about subscriptions, its own and the other shards'.
//!
//! - `LocalSubs` (in the local trie, by filter): this shard's sessions subscribed to a filter.
//! - `ShareGroup` (by share key): this shard's members of one shared subscription.
//! - [`crate::interest::Interest`] (in the interest trie, by filter): which *other* shards have
//!   plain subscribers on a filter, and which shards have members of each shared group.
//!
//! Messages between two shards ([`ShardMsg`]) arrive in the order sent; interest changes do not
//! travel with them but on the [`crate::interest::InterestBoard`].

use std::num::NonZeroU32;
use std::sync::Arc;

use hashbrown::HashMap;
use ironsight_codec::{QoS, SubscriptionOptions};

use crate::message::SharedMessage;
use crate::queue::Outgoing;
use crate::session::SessionIdx;
use crate::settings::SHARDS_MAX;

pub type ShardId = u16;

/// Names a shared subscription across shards: `group/filter` (a group name has no `/`).
pub type ShareKey = Arc<str>;

pub fn share_key(group: &str, filter: &str) -> ShareKey {
    let mut key = String::with_capacity(group.len() + 1 + filter.len());
    key.push_str(group);
    key.push('/');
    key.push_str(filter);
    key.into()
}

/// The filter part of a share key.
pub fn share_filter(key: &str) -> &str {
    key.split_once('/').map_or("", |(_, filter)| filter)
}

const _: () = assert!(SHARDS_MAX <= u64::BITS as usize);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardSet(u64);

impl ShardSet {
    pub fn insert(&mut self, shard: ShardId) {
        self.0 |= 1 << shard;
    }

    pub fn remove(&mut self, shard: ShardId) {
        self.0 &= !(1 << shard);
    }

    pub fn contains(self, shard: ShardId) -> bool {
        self.0 & (1 << shard) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = ShardId> {
        (0..u64::BITS as ShardId).filter(move |&s| self.contains(s))
    }

    /// The member after `previous` in round-robin order, wrapping; `None` when empty.
    pub fn next_after(self, previous: ShardId) -> Option<ShardId> {
        if self.is_empty() {
            return None;
        }
        let above = if previous + 1 >= u64::BITS as ShardId {
            0
        } else {
            self.0 >> (previous + 1) << (previous + 1)
        };
        let bits = if above != 0 { above } else { self.0 };
        Some(bits.trailing_zeros() as ShardId)
    }
}

/// A plain subscription of one local session, as stored in the local trie.
#[derive(Clone, Copy, Debug)]
pub struct LocalSub {
    pub options: SubscriptionOptions,
    pub id: Option<NonZeroU32>,
}

pub type LocalSubs = HashMap<SessionIdx, LocalSub>;

#[derive(Debug)]
pub struct Member {
    pub session: SessionIdx,
    pub options: SubscriptionOptions,
    pub id: Option<NonZeroU32>,
}

/// This shard's members of one shared subscription.
#[derive(Debug)]
pub struct ShareGroup {
    pub key: ShareKey,
    pub members: Vec<Member>,
    pub next: usize,
}

/// Messages between shards. Everything here is `Send`: payloads travel as shared `Arc`s.
#[derive(Debug)]
pub enum ShardMsg {
    /// A message published on another shard. `plain`: deliver to local plain subscribers;
    /// `shares`: deliver to one local member of each; `retained`: update the retained replica.
    Publish {
        msg: SharedMessage,
        plain: bool,
        shares: Vec<ShareKey>,
        retained: bool,
        /// Set when the publisher waits for the outcome (a v5 PUBACK/PUBREC reason): the
        /// receiver answers [`ShardMsg::PublishOutcome`] with this token.
        ack: Option<u64>,
    },
    /// Whether a session on the answering shard had to refuse the message (its queue full).
    PublishOutcome { token: u64, rejected: bool },
    /// Messages of a shared subscription that must go to another member (their member left, or
    /// this shard had none left). `hops` bounds the forwarding between shards.
    Redispatch {
        share: ShareKey,
        messages: Vec<Outgoing>,
        hops: u16,
    },
}

/// The QoS of a delivery: the lower of the message's and the subscription's ([MQTT-3.8.4-8]).
pub fn delivery_qos(msg: QoS, sub: QoS) -> QoS {
    msg.min(sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(shards: &[ShardId]) -> ShardSet {
        let mut s = ShardSet::default();
        shards.iter().for_each(|&id| s.insert(id));
        s
    }

    #[test]
    fn round_robin_wraps_over_members() {
        let s = set(&[1, 4, 63]);
        assert_eq!(s.next_after(0), Some(1));
        assert_eq!(s.next_after(1), Some(4));
        assert_eq!(s.next_after(4), Some(63));
        assert_eq!(s.next_after(63), Some(1));
        assert_eq!(ShardSet::default().next_after(3), None);
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 4, 63]);
    }

    #[test]
    fn share_keys_split_back() {
        let key = share_key("g", "a/+/#");
        assert_eq!(&*key, "g/a/+/#");
        assert_eq!(share_filter(&key), "a/+/#");
    }
}
