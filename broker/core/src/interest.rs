//! What the other shards subscribe to, and how a shard learns it before it routes a message.
//!
//! Each shard keeps an *interest* trie: for each filter, which other shards have plain
//! subscribers on it ([`Interest::shards`]) and which shards have members of each shared group
//! on it ([`Interest::shares`]). A publish then goes only to the shards that want it.
//!
//! # Publish after subscribe
//! The guarantee: if the broker took in B's SUBSCRIBE before A's PUBLISH, B gets the message,
//! whichever shards B and A are on, and whether or not B has its SUBACK yet.
//!
//! A shard that gains its first subscriber on a filter (or loses its last) posts the change to
//! every other shard's inbox on the [`InterestBoard`] *while it handles the SUBSCRIBE*: the push
//! and the bump of the inbox's `posted` counter happen before the SUBSCRIBE's handling returns.
//! A shard reads its own `posted` counter before it routes anything (one atomic load, on a cache
//! line that only changes when interest does) and applies what its inbox holds when the counter
//! moved. So the SUBSCRIBE takes effect at the bump, the PUBLISH at the load, and a load that
//! comes after the bump sees it (release/acquire on `posted`): B's shard is in the interest
//! A's shard routes with. No barrier, no window of recent messages, no wait for a SUBACK.
//!
//! Interest changes do not travel in the shard channels, so they never queue behind messages;
//! the changes of one shard still apply in the order it posted them (one vector per inbox).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::routing::{ShardId, ShardSet, ShareKey};
use crate::settings::SHARDS_MAX;

#[derive(Debug)]
pub struct ShareInterest {
    pub key: ShareKey,
    /// Shards with at least one member, this shard included.
    pub shards: ShardSet,
    /// The shard that got the previous message (round robin across shards).
    pub last: Cell<ShardId>,
}

#[derive(Debug, Default)]
pub struct Interest {
    /// Other shards with plain subscribers on this filter.
    pub shards: ShardSet,
    pub shares: Vec<ShareInterest>,
}

impl Interest {
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty() && self.shares.is_empty()
    }

    /// Records that shard `from` has (`add`) or no longer has subscribers here: plain ones, or
    /// members of the shared group `key`.
    pub fn apply(&mut self, from: ShardId, key: Option<&ShareKey>, add: bool) {
        let Some(key) = key else {
            match add {
                true => self.shards.insert(from),
                false => self.shards.remove(from),
            }
            return;
        };
        let at = self.shares.iter().position(|s| s.key == *key);
        match (at, add) {
            (Some(at), true) => self.shares[at].shards.insert(from),
            (None, true) => {
                let mut shards = ShardSet::default();
                shards.insert(from);
                self.shares.push(ShareInterest {
                    key: key.clone(),
                    shards,
                    last: Cell::new(from),
                });
            }
            (Some(at), false) => {
                self.shares[at].shards.remove(from);
                if self.shares[at].shards.is_empty() {
                    self.shares.swap_remove(at);
                }
            }
            (None, false) => {}
        }
    }
}

/// Shard `from` gained its first (`add`) or lost its last subscriber on `filter`, plain or of
/// the shared subscription `share`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterestChange {
    pub from: ShardId,
    pub filter: Arc<str>,
    pub share: Option<ShareKey>,
    pub add: bool,
}

/// One inbox per shard, shared by all shards of a broker.
#[derive(Debug)]
pub struct InterestBoard {
    inboxes: Box<[Inbox]>,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Bumped after every post; the owner applies its inbox when this moved since it last looked.
    posted: AtomicU64,
    changes: Mutex<Vec<InterestChange>>,
}

impl InterestBoard {
    pub fn new(shards: u16) -> Arc<InterestBoard> {
        assert!(shards >= 1, "a broker has at least one shard");
        assert!(
            usize::from(shards) <= SHARDS_MAX,
            "at most {SHARDS_MAX} shards"
        );
        Arc::new(InterestBoard {
            inboxes: (0..shards).map(|_| Inbox::default()).collect(),
        })
    }

    pub fn shards(&self) -> u16 {
        u16::try_from(self.inboxes.len()).expect("at most SHARDS_MAX inboxes")
    }

    /// Posts `change` to every shard but its sender; visible to them when this returns.
    pub fn post(&self, change: &InterestChange) {
        for (to, inbox) in self.inboxes.iter().enumerate() {
            if to == usize::from(change.from) {
                continue;
            }
            inbox.lock().push(change.clone());
            // After the push, so that whoever sees the new count finds the change.
            inbox.posted.fetch_add(1, Ordering::Release);
        }
    }

    /// How many changes were posted to shard `to` so far; cheap enough for every publish.
    pub fn posted(&self, to: ShardId) -> u64 {
        self.inboxes[usize::from(to)].posted.load(Ordering::Acquire)
    }

    /// Takes the changes posted to shard `to`, in the order each sender posted them.
    pub fn take(&self, to: ShardId, into: &mut Vec<InterestChange>) {
        into.append(&mut self.inboxes[usize::from(to)].lock());
    }
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<InterestChange>> {
        // A shard that panicked holding the lock left a complete vector: pushes and takes do not
        // unwind halfway.
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(from: ShardId, filter: &str, add: bool) -> InterestChange {
        InterestChange {
            from,
            filter: filter.into(),
            share: None,
            add,
        }
    }

    #[test]
    fn a_post_reaches_every_other_shard_in_order() {
        let board = InterestBoard::new(3);
        board.post(&change(1, "a", true));
        board.post(&change(1, "a", false));
        assert_eq!(board.posted(0), 2);
        assert_eq!(board.posted(1), 0, "not to its sender");
        assert_eq!(board.posted(2), 2);
        let mut got = Vec::new();
        board.take(0, &mut got);
        assert_eq!(got, [change(1, "a", true), change(1, "a", false)]);
        got.clear();
        board.take(0, &mut got);
        assert!(got.is_empty(), "taken once");
        board.take(2, &mut got);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn shares_come_and_go_per_shard() {
        let key: ShareKey = "g/a".into();
        let mut interest = Interest::default();
        interest.apply(2, Some(&key), true);
        interest.apply(5, Some(&key), true);
        interest.apply(2, Some(&key), false);
        assert!(!interest.is_empty());
        assert_eq!(interest.shares[0].shards.iter().collect::<Vec<_>>(), [5]);
        interest.apply(5, Some(&key), false);
        assert!(
            interest.is_empty(),
            "the last member's shard leaving drops the share"
        );
        interest.apply(3, None, true);
        assert!(interest.shards.contains(3));
        interest.apply(3, None, false);
        assert!(interest.is_empty());
    }

    /// Two threads: one posts, the other polls `posted` and takes; whatever it saw counted, it
    /// finds (the release/acquire pairing the guarantee rests on).
    #[test]
    fn a_seen_count_implies_the_change_is_there() {
        let board = InterestBoard::new(2);
        let poster = {
            let board = board.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    board.post(&change(1, &i.to_string(), true));
                }
            })
        };
        let mut applied = 0u64;
        let mut got = Vec::new();
        while applied < 10_000 {
            let seen = board.posted(0);
            if seen != applied {
                board.take(0, &mut got);
                assert!(
                    got.len() as u64 >= seen,
                    "saw {seen} posted, found {}",
                    got.len()
                );
                applied = seen;
            }
        }
        poster.join().expect("poster");
        board.take(0, &mut got);
        assert_eq!(got.len(), 10_000);
    }
}
