//! Output that waits for the journal: nothing the broker says leaves before the records it
//! promises are on disk (`docs/store.md`, "Holding replies").
//!
//! The shard counts the records it hands its journal; the server reports how many are durable
//! ([`Shard::durable`]). A packet that made records holds its connection's output from where
//! its own answer begins until those records are durable: its PUBACK, PUBREC, PUBCOMP, SUBACK,
//! UNSUBACK or CONNACK, and whatever was written to the connection after it, which keeps every
//! acknowledgement in order without a queue of packets (`outbuf.rs`). What was written before
//! it goes as its own records are durable, so a client that keeps publishing gets each
//! acknowledgement one batch after its message, not once it stops. A QoS 2 message sent to a
//! durable session holds that connection too, so that a subscriber never sees a packet id the
//! journal could forget. A publish from another shard answers its outcome only once what it
//! stored here is durable, so the publisher's acknowledgement waits for every shard it reached.
//!
//! With a journal whose records are durable when recorded (memory only), `durable` always
//! equals `appended` and nothing is ever held.

use std::collections::VecDeque;

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
    /// Each record count some connection's output waits for, with the connection (slot and
    /// generation), in the order they were held (so in the order of the counts). The holds
    /// themselves are in the connection's output (`OutBuf::hold`).
    held: VecDeque<(u64, ConnId, u32)>,
    /// Publish outcomes for other shards, each waiting for the records its delivery made here.
    outcomes: VecDeque<(u64, ShardId, ShardMsg)>,
}

/// Where a connection's output and the journal stood before some work: what
/// [`Shard::hold_output`] holds from.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutputMark {
    records: u64,
    output: u64,
}

impl Shard {
    /// The journal's record count now: a mark to compare with after some work.
    pub(super) fn journal_mark(&self) -> u64 {
        self.journal.appended
    }

    /// The journal's record count and the end of `conn`'s output now.
    pub(super) fn output_mark(&self, conn: ConnId) -> OutputMark {
        OutputMark {
            records: self.journal.appended,
            output: self.conns.get(conn as usize).map_or(0, |c| c.out.end()),
        }
    }

    /// Holds what `conn` was sent since `mark`, and all it is sent later, until the records
    /// made since `mark` are durable.
    pub(super) fn hold_output(&mut self, conn: ConnId, mark: OutputMark) {
        if !self.journal.pending_since(mark.records) {
            return;
        }
        let Some(c) = self.conns.get_mut(conn as usize).filter(|c| c.is_open()) else {
            return;
        };
        let until = self.journal.appended;
        if c.out.hold(mark.output, until) {
            let generation = c.generation;
            self.durability.held.push_back((until, conn, generation));
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
            // A connection gone since (its slot free or taken by another) waits for nothing.
            let released = self
                .conns
                .get_mut(conn as usize)
                .filter(|c| c.generation == generation)
                .is_some_and(|c| c.out.durable(count));
            if released {
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
}
