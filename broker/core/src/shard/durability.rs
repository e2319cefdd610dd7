//! Output that waits for the journal: nothing the broker says leaves before the records it
//! promises are on disk (`docs/store.md`, "Holding replies").
//!
//! The shard counts the records it hands its journal; the server reports how many are durable
//! ([`Shard::durable`]). A packet that made records holds its connection's output until they are
//! durable: its PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK or CONNACK, and whatever was written
//! to the connection after it, which keeps every acknowledgement in order without a queue of
//! packets. A QoS 2 message sent to a durable session holds that connection too, so that a
//! subscriber never sees a packet id the journal could forget. A publish from another shard
//! answers its outcome only once what it stored here is durable, so the publisher's
//! acknowledgement waits for every shard it reached.
//!
//! With a journal whose records are durable when recorded (memory only), `durable` always
//! equals `appended` and nothing is ever held.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::Shard;
use crate::conn::ConnId;
use crate::journal::{Journal, Record};
use crate::routing::{ShardId, ShardMsg};

/// The shard's journal with its record count: every record passes here, so the count is
/// always the journal's.
pub(super) struct Log {
    journal: Box<dyn Journal>,
    /// Records handed to the journal since the shard started.
    pub appended: u64,
    /// Of those, how many the server reported on disk.
    pub durable: u64,
}

impl Log {
    pub fn new(journal: Box<dyn Journal>) -> Log {
        Log {
            journal,
            appended: 0,
            durable: 0,
        }
    }

    /// Hands `record` to the journal and counts it.
    pub fn record(&mut self, record: Record<'_>) {
        self.journal.record(record);
        self.appended += 1;
        if self.journal.synchronous() {
            self.durable = self.appended;
        }
    }

    /// Whether records are durable as soon as they are made.
    pub fn synchronous(&self) -> bool {
        self.journal.synchronous()
    }

    /// Whether new durable work is refused now ([`Journal::full`]).
    pub fn full(&self) -> bool {
        self.journal.full()
    }

    /// Whether records after `mark` (a count taken earlier) are not durable yet.
    fn pending_since(&self, mark: u64) -> bool {
        self.appended > mark && self.appended > self.durable
    }
}

impl Journal for Log {
    fn record(&mut self, record: Record<'_>) {
        Log::record(self, record);
    }

    fn synchronous(&self) -> bool {
        Log::synchronous(self)
    }

    fn full(&self) -> bool {
        Log::full(self)
    }
}

/// What waits for the journal.
#[derive(Default)]
pub(super) struct Durability {
    /// Held connections with the record count each waits for, in the order they were held
    /// (so in the order of the counts).
    held: VecDeque<(u64, ConnId, u32)>,
    /// The count each held connection (by slot and generation) waits for: its latest, which
    /// a connection held again while held moves on.
    until: HashMap<ConnId, (u64, u32)>,
    /// Publish outcomes for other shards, each waiting for the records its delivery made here.
    outcomes: VecDeque<(u64, ShardId, ShardMsg)>,
}

impl Shard {
    /// The journal's record count now: a mark to compare with after some work.
    pub(super) fn journal_mark(&self) -> u64 {
        self.journal.appended
    }

    /// Holds `conn`'s output until the records made since `mark` are durable.
    pub(super) fn hold_output(&mut self, conn: ConnId, mark: u64) {
        if !self.journal.pending_since(mark) {
            return;
        }
        let Some(c) = self.conns.get_mut(conn as usize).filter(|c| c.is_open()) else {
            return;
        };
        let until = self.journal.appended;
        c.held = true;
        let generation = c.generation;
        let d = &mut self.durability;
        if d.until.insert(conn, (until, generation)) != Some((until, generation)) {
            d.held.push_back((until, conn, generation));
        }
    }

    /// Sends `outcome` to shard `to` once the records made since `mark` are durable.
    pub(super) fn send_outcome(&mut self, to: ShardId, outcome: ShardMsg, mark: u64) {
        if self.journal.pending_since(mark) {
            let until = self.journal.appended;
            self.durability.outcomes.push_back((until, to, outcome));
        } else {
            self.queue_remote(to, outcome);
        }
    }

    /// The server reports the journal's first `count` records durable: what waited for them
    /// goes out.
    pub fn durable(&mut self, count: u64) {
        let log = &mut self.journal;
        assert!(
            count <= log.appended,
            "the journal reports {count} records durable of {} made",
            log.appended
        );
        log.durable = log.durable.max(count);
        while let Some(&(until, conn, generation)) = self.durability.held.front() {
            if until > count {
                break;
            }
            self.durability.held.pop_front();
            if self.durability.until.get(&conn) != Some(&(until, generation)) {
                // Held again since for a later record (a later entry releases it), or the
                // connection is gone.
                continue;
            }
            self.durability.until.remove(&conn);
            if let Some(c) = self.conns.get_mut(conn as usize) {
                c.held = false;
                self.mark_dirty(conn);
            }
        }
        while let Some((until, _, _)) = self.durability.outcomes.front() {
            if *until > count {
                break;
            }
            let (_, to, outcome) = self.durability.outcomes.pop_front().expect("checked");
            self.queue_remote(to, outcome);
        }
    }

    /// Records made so far: the count the server's journal reports durable up to.
    pub fn records_made(&self) -> u64 {
        self.journal.appended
    }

    /// A connection slot is freed: it waits for nothing any more.
    pub(super) fn forget_held(&mut self, conn: ConnId) {
        self.durability.until.remove(&conn);
    }
}
