//! A bound on how many lines one kind of event may log a second.
//!
//! Logging is synchronous: a peer that makes the broker log a line per connection (a flood of
//! failed TLS handshakes) would otherwise have the shard spend its time writing to stderr, and
//! stall every other client of it. Past the budget, lines are counted, and the count is logged
//! once a second instead.

use std::cell::Cell;

pub struct LogBudget {
    per_second: u32,
    /// The second (on the shard's clock) the current count belongs to.
    second: Cell<u32>,
    used: Cell<u32>,
    suppressed: Cell<u32>,
}

impl LogBudget {
    pub const fn new(per_second: u32) -> LogBudget {
        LogBudget {
            per_second,
            second: Cell::new(0),
            used: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    /// Whether a line may be logged in second `now_s`; if not, it is counted.
    pub fn allow(&self, now_s: u32) -> bool {
        if self.second.get() != now_s {
            self.second.set(now_s);
            self.used.set(0);
        }
        if self.used.get() < self.per_second {
            self.used.set(self.used.get() + 1);
            return true;
        }
        self.suppressed.set(self.suppressed.get() + 1);
        false
    }

    /// Lines not logged since the last call.
    pub fn take_suppressed(&self) -> u32 {
        self.suppressed.replace(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the budget refills each second and counts what it held back.
    #[test]
    fn a_budget_per_second() {
        let budget = LogBudget::new(2);
        assert!(budget.allow(7) && budget.allow(7));
        assert!(!budget.allow(7) && !budget.allow(7));
        assert_eq!(budget.take_suppressed(), 2);
        assert_eq!(budget.take_suppressed(), 0);
        assert!(budget.allow(8), "a new second, a new budget");
    }
}
