//! The gateway's counters, logged every `CountersInterval` and on exit as one line.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Counters {
    pub notifications_received: AtomicU64,
    /// Notifications that did not parse.
    pub notifications_malformed: AtomicU64,
    /// Notifications for a client with no registered device (or another user's).
    pub notifications_unregistered: AtomicU64,
    pub registrations: AtomicU64,
    pub registrations_refused: AtomicU64,
    pub pushes_sent: AtomicU64,
    pub pushes_failed: AtomicU64,
    pub pushes_rate_limited: AtomicU64,
    /// Attempts made again after 429, 5xx or no answer.
    pub pushes_retried: AtomicU64,
    pub invalid_tokens_removed: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn one(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |a: &AtomicU64| a.load(Relaxed);
        write!(
            f,
            "notifications_received={} notifications_malformed={} notifications_unregistered={} \
             registrations={} registrations_refused={} pushes_sent={} pushes_failed={} \
             pushes_rate_limited={} pushes_retried={} invalid_tokens_removed={}",
            c(&self.notifications_received),
            c(&self.notifications_malformed),
            c(&self.notifications_unregistered),
            c(&self.registrations),
            c(&self.registrations_refused),
            c(&self.pushes_sent),
            c(&self.pushes_failed),
            c(&self.pushes_rate_limited),
            c(&self.pushes_retried),
            c(&self.invalid_tokens_removed),
        )
    }
}
