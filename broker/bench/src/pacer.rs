//! Rate pacing with time passed in: how many messages a publisher may send by `now`.
//!
//! The pacer is a schedule, not a timer: message *n* is due at `start + n / rate`. A publisher
//! held back by flow control falls behind the schedule; when it is released it may catch up by at
//! most [`DEBT_MAX_S`] seconds worth of messages, and the rest of the missed slots are dropped.
//! That keeps the offered load honest: a stall shows up as a lower sent rate and as backpressure
//! time, not as a burst far above `--rate` afterwards.

use crate::clock::NS_PER_S;

/// The most a paced sender may catch up after a stall, in seconds of its rate.
pub const DEBT_MAX_S: f64 = 0.1;

/// Rates are kept in thousandths of a message per second so the schedule is integer arithmetic:
/// the same inputs always give the same slots.
const MILLI: u128 = 1000;

/// Schedule of one paced sender. A rate of 0 means unpaced: everything is always due.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Messages per second × [`MILLI`]; 0 when unpaced.
    rate_milli: u128,
    /// Start of the schedule; moves forward when missed slots are dropped.
    start_ns: u64,
    /// Messages counted against the schedule since `start_ns`.
    sent: u64,
}

impl Pacer {
    pub fn new(rate_per_s: f64, start_ns: u64) -> Self {
        assert!(rate_per_s >= 0.0 && rate_per_s.is_finite());
        Pacer {
            rate_milli: (rate_per_s * MILLI as f64).round() as u128,
            start_ns,
            sent: 0,
        }
    }

    pub fn is_unpaced(&self) -> bool {
        self.rate_milli == 0
    }

    /// Messages that may be sent at `now_ns` (`u64::MAX` when unpaced). Drops missed slots
    /// beyond [`DEBT_MAX_S`].
    pub fn allowance(&mut self, now_ns: u64) -> u64 {
        if self.is_unpaced() {
            return u64::MAX;
        }
        let due = self.due_by(now_ns);
        let debt_max = ((self.rate_milli as f64 / MILLI as f64 * DEBT_MAX_S) as u64).max(1);
        if due > self.sent + debt_max {
            // Move the schedule forward past the dropped slots, so that `debt_max` are due now.
            let behind = (due - self.sent - debt_max) as u128;
            self.start_ns += (behind * NS_PER_S as u128 * MILLI / self.rate_milli) as u64;
            self.sent = self.due_by(now_ns).saturating_sub(debt_max);
        }
        self.due_by(now_ns).saturating_sub(self.sent)
    }

    /// Counts `n` messages as sent.
    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// When the next message is due (`None` when unpaced: always).
    pub fn next_due_ns(&self) -> Option<u64> {
        if self.is_unpaced() {
            return None;
        }
        // Slot n is due at the first ns where n <= elapsed * rate: round the division up.
        let numerator = self.sent as u128 * NS_PER_S as u128 * MILLI;
        let offset = numerator.div_ceil(self.rate_milli) as u64;
        Some(self.start_ns + offset)
    }

    /// Messages due at `now_ns` since the start of the schedule (message 0 is due at start).
    fn due_by(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed = (now_ns - self.start_ns) as u128;
        (elapsed * self.rate_milli / (NS_PER_S as u128 * MILLI)) as u64 + 1
    }
}

/// Where sender `index` of `count` starts its schedule, within the first interval of its rate:
/// evenly staggered, so that `count` paced senders together offer a smooth rate instead of
/// `count`-message bursts that would measure queueing in the tool and the broker, not latency.
pub fn stagger_ns(rate_per_s: f64, index: u32, count: u32) -> u64 {
    if rate_per_s <= 0.0 || count == 0 {
        return 0;
    }
    let interval_ns = NS_PER_S as f64 / rate_per_s;
    (interval_ns * (index % count) as f64 / count as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Proves a steady sender gets exactly `rate` messages a second, one slot at a time.
    #[test]
    fn steady_rate() {
        let mut p = Pacer::new(1000.0, 0);
        let mut sent = 0;
        for t in 0..1000 {
            let n = p.allowance(t * MS);
            assert!(n <= 1, "at {t} ms: {n}");
            p.sent(n);
            sent += n;
        }
        assert_eq!(sent, 1000);
        assert_eq!(p.next_due_ns(), Some(1000 * MS));
    }

    /// Proves nothing is due before the start, and the first message is due at the start.
    #[test]
    fn before_start() {
        let mut p = Pacer::new(10.0, 5 * MS);
        assert_eq!(p.allowance(0), 0);
        assert_eq!(p.allowance(5 * MS), 1);
        p.sent(1);
        assert_eq!(p.allowance(50 * MS), 0);
        assert_eq!(p.next_due_ns(), Some(105 * MS));
        assert_eq!(p.allowance(105 * MS), 1);
    }

    /// Proves a stalled sender catches up at most DEBT_MAX_S worth, and then runs at the rate.
    #[test]
    fn stall_drops_missed_slots() {
        let mut p = Pacer::new(1000.0, 0);
        // Blocked for 2 s: 2001 slots missed, only 100 (0.1 s at 1000/s) may be caught up.
        let n = p.allowance(2000 * MS);
        assert_eq!(n, 100);
        p.sent(n);
        assert_eq!(p.allowance(2000 * MS), 0);
        assert_eq!(p.allowance(2001 * MS), 1);
    }

    /// Proves a slow rate still allows one message after a stall (never a zero debt).
    #[test]
    fn slow_rate_debt_is_at_least_one() {
        let mut p = Pacer::new(1.0, 0);
        assert_eq!(p.allowance(0), 1);
        p.sent(1);
        assert_eq!(p.allowance(10_000 * MS), 1);
    }

    /// Proves senders are spread evenly over one interval, and unpaced ones are not moved.
    #[test]
    fn staggering() {
        // 4 senders at 10/s each: one every 25 ms in the aggregate.
        let starts: Vec<u64> = (0..4).map(|i| stagger_ns(10.0, i, 4)).collect();
        assert_eq!(starts, [0, 25 * MS, 50 * MS, 75 * MS]);
        assert_eq!(stagger_ns(0.0, 3, 4), 0);
    }

    /// Proves an unpaced sender is never limited and has no next due time.
    #[test]
    fn unpaced() {
        let mut p = Pacer::new(0.0, 0);
        assert!(p.is_unpaced());
        assert_eq!(p.allowance(0), u64::MAX);
        assert_eq!(p.next_due_ns(), None);
    }
}
