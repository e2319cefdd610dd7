//! At most one push per device per interval. A notification that comes sooner is not lost:
//! it is held, later ones for the same client are added to it, and it goes out when the
//! interval has passed (the broker reports only messages new since its last scan, so a
//! dropped notification could leave a phone asleep with messages waiting).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::notification::Notification;

struct Slot {
    last_push: Instant,
    held: Option<Notification>,
}

/// Devices pushed within the interval, by client id. Entries whose interval has passed with
/// nothing held are dropped on `due`, so the map holds at most the devices pushed in one
/// interval (each a registered device: MaxDevices bounds it).
pub struct RateLimiter {
    interval: Duration,
    slots: HashMap<String, Slot>,
}

pub enum Admit {
    /// Push it now.
    Now(Notification),
    /// Held for later (or added to what was held).
    Held,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> RateLimiter {
        RateLimiter {
            interval,
            slots: HashMap::new(),
        }
    }

    pub fn admit(&mut self, n: Notification, now: Instant) -> Admit {
        match self.slots.get_mut(&n.client_id) {
            Some(slot) if now.duration_since(slot.last_push) < self.interval => {
                match &mut slot.held {
                    Some(held) => held.merge(n),
                    None => slot.held = Some(n),
                }
                Admit::Held
            }
            Some(slot) => {
                slot.last_push = now;
                Admit::Now(n)
            }
            None => {
                self.slots.insert(
                    n.client_id.clone(),
                    Slot {
                        last_push: now,
                        held: None,
                    },
                );
                Admit::Now(n)
            }
        }
    }

    /// The held notifications whose interval has passed (their pushes count from `now`), and
    /// the slots with nothing left to hold forgotten.
    pub fn due(&mut self, now: Instant) -> Vec<Notification> {
        let interval = self.interval;
        let mut due = Vec::new();
        self.slots.retain(|_, slot| {
            if now.duration_since(slot.last_push) < interval {
                return true;
            }
            match slot.held.take() {
                Some(n) => {
                    due.push(n);
                    slot.last_push = now;
                    true
                }
                None => false,
            }
        });
        due
    }

    /// Forgets a device (its registration was removed).
    pub fn forget(&mut self, client_id: &str) {
        self.slots.remove(client_id);
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Arrived;

    fn note(count: u64) -> Notification {
        Notification {
            client_id: "c".into(),
            user_id: "u".into(),
            messages_arrived: vec![Arrived {
                topic_string: "t".into(),
                message_count: count,
            }],
        }
    }

    /// Proves one push per interval, the held ones added up and sent once the interval
    /// passed, and idle slots forgotten. Time is passed in: no sleeping.
    #[test]
    fn one_push_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r = RateLimiter::new(10 * s);
        assert!(matches!(r.admit(note(1), t0), Admit::Now(_)));
        assert!(matches!(r.admit(note(2), t0 + s), Admit::Held));
        assert!(matches!(r.admit(note(3), t0 + 2 * s), Admit::Held));
        assert!(r.due(t0 + 9 * s).is_empty());
        let due = r.due(t0 + 10 * s);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].message_count(), 5);
        assert!(
            matches!(r.admit(note(1), t0 + 11 * s), Admit::Held),
            "the held push restarted the interval"
        );
        assert_eq!(r.due(t0 + 20 * s).len(), 1);
        assert!(r.due(t0 + 30 * s).is_empty());
        assert!(r.is_empty(), "an idle slot is forgotten");
        assert!(matches!(r.admit(note(1), t0 + 31 * s), Admit::Now(_)));
    }
}
