//! What subscribers received, judged against what publishers sent in the measured window. No
//! I/O and no clock: the worker passes each decoded payload and the time it was decoded.
//!
//! Rules:
//! - A message counts only if its header carries this run's id; other benchmark payloads are
//!   `stale` (earlier runs, retained leftovers, persistent backlogs), anything else `foreign`.
//! - Only messages the publisher stamped inside the window count toward expected, received,
//!   lost and latency; warm-up messages are counted apart.
//! - Each sink (a subscriber, or a whole shared group) keeps one [`SeqTracker`] per publisher,
//!   so loss and duplicates are known per publisher→sink pair.
//! - Expected is known only once every publisher has reported its window count
//!   ([`Accounting::settle`]); from then on [`Accounting::complete`] says whether the drain can
//!   stop early.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::header::{Header, Parsed, WINDOW_SEQ_BASE};
use crate::latency::Latency;
use crate::plan::Sources;
use crate::seq::{Arrival, SeqTracker};

/// One place messages are accounted: a subscriber, or a shared group.
#[derive(Debug)]
struct Sink {
    sources: Sources,
    trackers: HashMap<u32, SeqTracker>,
    /// Subscribed successfully; only active sinks count toward expected.
    active: bool,
    /// Distinct window messages from expected sources.
    received: u64,
}

/// What one payload was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A window message seen for the first time at this sink.
    New,
    Duplicate,
    /// This run's message, sent during warm-up.
    Warmup,
    /// From a publisher this sink should not hear from.
    Unexpected,
    Stale,
    Foreign,
}

/// The measured window, in CLOCK_MONOTONIC ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Sums over one worker's sinks once expected is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub pairs_with_loss: u64,
    /// Late arrivals that could not be told from duplicates (see `seq::GAPS_MAX`).
    pub untracked: u64,
    pub inactive_sinks: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.expected += o.expected;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.pairs_with_loss += o.pairs_with_loss;
        self.untracked += o.untracked;
        self.inactive_sinks += o.inactive_sinks;
    }
}

#[derive(Debug)]
pub struct Accounting {
    run_id: u32,
    sinks: HashMap<u32, Sink>,
    window: Option<Window>,
    record_latency: bool,
    /// Expected in total over active sinks, once settled.
    expected: Option<u64>,
    /// Distinct window messages at active sinks (for early completion).
    received_active: u64,
    pub latency: Latency,
    pub stale: u64,
    pub foreign: u64,
    pub warmup: u64,
    pub unexpected: u64,
    /// This run's messages decoded while the window was open, whatever their send time.
    pub received_during_window: u64,
}

impl Accounting {
    /// `record_latency`: whether each message's latency goes into [`Accounting::latency`] (the
    /// retained storm measures per subscriber instead).
    pub fn new(run_id: u32, record_latency: bool) -> Self {
        Accounting {
            run_id,
            sinks: HashMap::new(),
            window: None,
            record_latency,
            expected: None,
            received_active: 0,
            latency: Latency::new(),
            stale: 0,
            foreign: 0,
            warmup: 0,
            unexpected: 0,
            received_during_window: 0,
        }
    }

    pub fn add_sink(&mut self, sink: u32, sources: Sources) {
        self.sinks.entry(sink).or_insert(Sink {
            sources,
            trackers: HashMap::new(),
            active: false,
            received: 0,
        });
    }

    /// Marks a sink subscribed (any member, for a shared group).
    pub fn activate(&mut self, sink: u32) {
        let s = self.sinks.get_mut(&sink).expect("activate: unknown sink");
        if !s.active {
            s.active = true;
            self.received_active += s.received;
        }
    }

    pub fn set_window(&mut self, window: Window) {
        self.window = Some(window);
    }

    /// Accounts one PUBLISH payload decoded by a member of `sink` at `now_ns`.
    pub fn on_payload(&mut self, sink: u32, payload: &[u8], now_ns: u64) -> Outcome {
        let header = match Header::parse(payload, self.run_id) {
            Parsed::Ours(h) => h,
            Parsed::OtherRun => {
                self.stale += 1;
                return Outcome::Stale;
            }
            Parsed::Foreign => {
                self.foreign += 1;
                return Outcome::Foreign;
            }
        };
        if self
            .window
            .is_some_and(|w| (w.start_ns..w.end_ns).contains(&now_ns))
        {
            self.received_during_window += 1;
        }
        if !header.in_window() {
            self.warmup += 1;
            return Outcome::Warmup;
        }
        self.on_window_message(sink, header, now_ns)
    }

    fn on_window_message(&mut self, sink: u32, header: Header, now_ns: u64) -> Outcome {
        let s = self.sinks.get_mut(&sink).expect("on_payload: unknown sink");
        let expected_source = match s.sources {
            Sources::All { publishers } => header.publisher < publishers,
            Sources::One(p) => header.publisher == p,
            Sources::Retained { publisher, .. } => header.publisher == publisher,
        };
        if !expected_source {
            self.unexpected += 1;
            return Outcome::Unexpected;
        }
        let tracker = s.trackers.entry(header.publisher).or_default();
        match tracker.record(header.seq - WINDOW_SEQ_BASE) {
            Arrival::Duplicate => Outcome::Duplicate,
            Arrival::New => {
                s.received += 1;
                if s.active {
                    self.received_active += 1;
                }
                if self.record_latency {
                    self.latency
                        .record_ns(now_ns.saturating_sub(header.sent_ns));
                }
                Outcome::New
            }
        }
    }

    /// Distinct window messages sink `sink` has received.
    pub fn sink_received(&self, sink: u32) -> u64 {
        self.sinks.get(&sink).map_or(0, |s| s.received)
    }

    /// Window messages sink `sink` should get, given each publisher's window count.
    fn sink_expected(sources: Sources, counts: &HashMap<u32, u64>) -> u64 {
        let count = |p: &u32| counts.get(p).copied().unwrap_or(0);
        match sources {
            Sources::All { publishers } => (0..publishers).map(|p| count(&p)).sum(),
            Sources::One(p) => count(&p),
            Sources::Retained { matching, .. } => matching,
        }
    }

    /// Fixes expected from the publishers' window counts (publisher id → messages).
    pub fn settle(&mut self, counts: &HashMap<u32, u64>) {
        let expected = self
            .sinks
            .values()
            .filter(|s| s.active)
            .map(|s| Self::sink_expected(s.sources, counts))
            .sum();
        self.expected = Some(expected);
    }

    /// Whether every active sink has every message expected (only after [`Self::settle`]).
    pub fn complete(&self) -> bool {
        self.expected.is_some_and(|e| self.received_active >= e)
    }

    /// Per-pair loss and duplicates over this worker's sinks.
    pub fn totals(&self, counts: &HashMap<u32, u64>) -> Totals {
        let mut t = Totals::default();
        for s in self.sinks.values() {
            t.duplicates += s.trackers.values().map(SeqTracker::duplicates).sum::<u64>();
            t.untracked += s.trackers.values().map(SeqTracker::untracked).sum::<u64>();
            if !s.active {
                t.inactive_sinks += 1;
                continue;
            }
            let mut pair = |publisher: u32, sent: u64| {
                let received = s.trackers.get(&publisher).map_or(0, SeqTracker::received);
                let received = received.min(sent);
                t.expected += sent;
                t.received += received;
                if received < sent {
                    t.lost += sent - received;
                    t.pairs_with_loss += 1;
                }
            };
            match s.sources {
                Sources::All { publishers } => {
                    for p in 0..publishers {
                        pair(p, counts.get(&p).copied().unwrap_or(0));
                    }
                }
                Sources::One(p) => pair(p, counts.get(&p).copied().unwrap_or(0)),
                Sources::Retained {
                    publisher,
                    matching,
                } => pair(publisher, matching),
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::HEADER_LEN;

    const RUN: u32 = 77;

    fn payload(run_id: u32, publisher: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 4];
        Header {
            run_id,
            publisher,
            seq,
            sent_ns,
        }
        .write(&mut p);
        p
    }

    fn w(i: u64) -> u64 {
        WINDOW_SEQ_BASE + i
    }

    /// Proves stale, foreign and warm-up messages never count, and window messages do, with
    /// their latency.
    #[test]
    fn stale_foreign_warmup() {
        let mut a = Accounting::new(RUN, true);
        a.add_sink(0, Sources::All { publishers: 2 });
        a.activate(0);
        a.set_window(Window {
            start_ns: 100,
            end_ns: 200,
        });
        assert_eq!(
            a.on_payload(0, &payload(RUN + 1, 0, w(0), 0), 150),
            Outcome::Stale
        );
        assert_eq!(a.on_payload(0, b"hello", 150), Outcome::Foreign);
        assert_eq!(a.on_payload(0, &payload(RUN, 0, 5, 0), 90), Outcome::Warmup);
        assert_eq!(
            a.on_payload(0, &payload(RUN, 0, w(0), 120_000), 170_000),
            Outcome::New
        );
        assert_eq!(
            a.on_payload(0, &payload(RUN, 9, w(0), 0), 150),
            Outcome::Unexpected
        );
        assert_eq!((a.stale, a.foreign, a.warmup, a.unexpected), (1, 1, 1, 1));
        assert_eq!(a.latency.summary().max, 50);
        // Only the unexpected message was decoded inside the window's time span (100..200 ns);
        // stale and foreign ones are never this run's.
        assert_eq!(a.received_during_window, 1);
    }

    /// Proves per-pair loss and duplicates in a fan-out of two publishers to two subscribers.
    #[test]
    fn fanout_loss_and_duplicates() {
        let mut a = Accounting::new(RUN, true);
        for sink in 0..2 {
            a.add_sink(sink, Sources::All { publishers: 2 });
            a.activate(sink);
        }
        // Sink 0 gets everything from both; sink 1 misses publisher 1's message 2 and gets
        // publisher 0's message 1 twice.
        for p in 0..2 {
            for i in 0..3 {
                a.on_payload(0, &payload(RUN, p, w(i), 0), 1);
            }
        }
        for (p, i) in [(0, 0), (0, 1), (0, 1), (0, 2), (1, 0), (1, 1)] {
            a.on_payload(1, &payload(RUN, p, w(i), 0), 1);
        }
        let counts = HashMap::from([(0, 3), (1, 3)]);
        a.settle(&counts);
        assert!(!a.complete());
        let t = a.totals(&counts);
        assert_eq!(t.expected, 12);
        assert_eq!(t.received, 11);
        assert_eq!(t.lost, 1);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.pairs_with_loss, 1);
        a.on_payload(1, &payload(RUN, 1, w(2), 0), 1);
        assert!(a.complete());
        assert_eq!(a.totals(&counts).lost, 0);
    }

    /// Proves a shared group is one sink: a message delivered to two members is a duplicate.
    #[test]
    fn shared_group_exactly_once() {
        let mut a = Accounting::new(RUN, false);
        a.add_sink(0, Sources::All { publishers: 1 });
        a.activate(0);
        a.activate(0); // a second member subscribing changes nothing
        assert_eq!(a.on_payload(0, &payload(RUN, 0, w(0), 0), 1), Outcome::New);
        assert_eq!(
            a.on_payload(0, &payload(RUN, 0, w(0), 0), 1),
            Outcome::Duplicate
        );
        let counts = HashMap::from([(0, 1)]);
        a.settle(&counts);
        let t = a.totals(&counts);
        assert_eq!((t.expected, t.received, t.duplicates), (1, 1, 1));
        assert_eq!(a.latency.count(), 0);
    }

    /// Proves sinks that never subscribed are left out of expected and reported apart, and a
    /// publisher that sent nothing expects nothing.
    #[test]
    fn inactive_sinks_and_silent_publishers() {
        let mut a = Accounting::new(RUN, true);
        a.add_sink(0, Sources::One(0));
        a.add_sink(1, Sources::One(1));
        a.activate(0);
        let counts = HashMap::from([(0, 0), (1, 5)]);
        a.settle(&counts);
        assert!(a.complete());
        let t = a.totals(&counts);
        assert_eq!((t.expected, t.lost, t.inactive_sinks), (0, 0, 1));
    }

    /// Proves the retained sink expects the topics its filter matches, whatever was published.
    #[test]
    fn retained_expects_matching() {
        let mut a = Accounting::new(RUN, false);
        a.add_sink(
            3,
            Sources::Retained {
                publisher: 0,
                matching: 2,
            },
        );
        a.activate(3);
        a.on_payload(3, &payload(RUN, 0, w(4), 0), 1);
        a.on_payload(3, &payload(RUN, 0, w(9), 0), 1);
        assert_eq!(a.sink_received(3), 2);
        let counts = HashMap::from([(0, 10)]);
        a.settle(&counts);
        assert!(a.complete());
        assert_eq!(a.totals(&counts).lost, 0);
    }
}
