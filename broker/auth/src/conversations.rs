//! Enhanced-authentication exchanges between one round and the next: a SCRAM server's state
//! after its server-first message, kept until the client's AUTH brings the next round.
//!
//! Bounded twice: an exchange the client never continues is dropped once its deadline passes
//! (the shard has refused the CONNECT by then), and at most `max` exchanges are open at once,
//! so that clients that start exchanges and walk away cannot grow the service's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ironsight_core::conn::ConnId;

/// One CONNECT's exchange: its shard, connection and ticket.
pub type ExchangeId = (u16, ConnId, u64);

pub struct Conversations<T> {
    open: Mutex<HashMap<ExchangeId, (Instant, T)>>,
    max: usize,
    ttl: Duration,
}

/// The service holds `max` open exchanges already.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl<T> Conversations<T> {
    pub fn new(max: usize, ttl: Duration) -> Self {
        Conversations {
            open: Mutex::new(HashMap::new()),
            max,
            ttl,
        }
    }

    /// Keeps `state` for the exchange's next round. Expired exchanges are dropped first.
    pub fn keep(&self, id: ExchangeId, state: T, now: Instant) -> Result<(), Full> {
        let mut open = self.open.lock().expect("no panics while held");
        if open.len() >= self.max {
            open.retain(|_, (deadline, _)| *deadline > now);
        }
        if open.len() >= self.max {
            return Err(Full);
        }
        open.insert(id, (now + self.ttl, state));
        Ok(())
    }

    /// The state of the exchange's last round, once; `None` when unknown or expired.
    pub fn take(&self, id: ExchangeId, now: Instant) -> Option<T> {
        let mut open = self.open.lock().expect("no panics while held");
        let (deadline, state) = open.remove(&id)?;
        (deadline > now).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a state is taken once, not after its deadline, and that a full table refuses
    /// new exchanges until expired ones make room.
    #[test]
    fn exchanges_are_taken_once_expire_and_are_bounded() {
        let now = Instant::now();
        let table = Conversations::new(2, Duration::from_secs(10));
        table.keep((0, 1, 1), "a", now).unwrap();
        assert_eq!(table.take((0, 1, 1), now), Some("a"));
        assert_eq!(table.take((0, 1, 1), now), None, "taken once");

        table.keep((0, 1, 2), "b", now).unwrap();
        table.keep((0, 2, 3), "c", now).unwrap();
        assert_eq!(table.keep((1, 1, 4), "d", now), Err(Full));
        let later = now + Duration::from_secs(11);
        assert_eq!(table.take((0, 2, 3), later), None, "expired");
        table.keep((1, 1, 4), "d", later).unwrap();
        table.keep((1, 1, 5), "e", later).unwrap();
        assert_eq!(table.take((1, 1, 4), later), Some("d"));
    }
}
