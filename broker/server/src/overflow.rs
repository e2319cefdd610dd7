//! Messages for other shards that did not fit their channels, kept in order per peer.
//!
//! A shard never waits on a full channel in a connection's task: the message goes here, and one
//! drainer task waits instead. Order matters (publishes from one client, and a subscription's
//! add before its remove), so a message may go straight into a peer's channel only when
//! nothing for that peer is waiting: neither queued here nor held by the drainer.

use std::collections::VecDeque;

pub struct Overflow<T> {
    queues: Vec<VecDeque<T>>,
    /// Queued messages plus the one the drainer holds.
    len: usize,
    /// The peer whose message the drainer has taken and waits to send.
    draining_to: Option<usize>,
}

impl<T> Overflow<T> {
    pub fn new(peers: usize) -> Self {
        Overflow {
            queues: (0..peers).map(|_| VecDeque::new()).collect(),
            len: 0,
            draining_to: None,
        }
    }

    /// Whether a new message for `peer` may skip the overflow without passing an older one.
    pub fn may_send_directly(&self, peer: usize) -> bool {
        self.queues[peer].is_empty() && self.draining_to != Some(peer)
    }

    pub fn push(&mut self, peer: usize, msg: T) {
        self.queues[peer].push_back(msg);
        self.len += 1;
    }

    /// The drainer takes the oldest message of the first peer with any; until [`Self::sent`],
    /// that peer counts as having a message waiting.
    pub fn take_next(&mut self) -> Option<(usize, T)> {
        let (peer, msg) = self
            .queues
            .iter_mut()
            .enumerate()
            .find_map(|(peer, queue)| queue.pop_front().map(|msg| (peer, msg)))?;
        self.draining_to = Some(peer);
        Some((peer, msg))
    }

    /// The drainer's message is in its channel. Returns how many are still waiting.
    pub fn sent(&mut self) -> usize {
        self.draining_to = None;
        self.len -= 1;
        self.len
    }

    /// Messages waiting: the queued ones and the one the drainer holds.
    pub fn waiting(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a message for a peer cannot overtake one the drainer holds for that peer, while
    /// other peers are not held up by it.
    #[test]
    fn nothing_overtakes_the_drainers_message() {
        let mut o = Overflow::new(2);
        assert!(o.may_send_directly(0));
        o.push(0, "m1");
        assert!(!o.may_send_directly(0));
        assert_eq!(o.take_next(), Some((0, "m1")));
        // The queue is empty, but m1 is not in the channel yet: m2 must queue behind it.
        assert!(!o.may_send_directly(0));
        assert!(o.may_send_directly(1));
        o.push(0, "m2");
        assert_eq!(o.sent(), 1);
        assert_eq!(o.take_next(), Some((0, "m2")));
        assert_eq!(o.sent(), 0);
        assert!(o.may_send_directly(0));
        assert_eq!(o.take_next(), None);
    }

    /// Proves each peer's messages come out in the order they went in, and the count covers
    /// the queued messages and the held one.
    #[test]
    fn per_peer_order_and_count() {
        let mut o = Overflow::new(3);
        for (peer, msg) in [(2, 1), (0, 2), (2, 3), (0, 4)] {
            o.push(peer, msg);
        }
        assert_eq!(o.waiting(), 4);
        let mut out = Vec::new();
        while let Some(next) = o.take_next() {
            assert_eq!(o.waiting(), 4 - out.len());
            out.push(next);
            o.sent();
        }
        assert_eq!(out, [(0, 2), (0, 4), (2, 1), (2, 3)]);
        assert_eq!(o.waiting(), 0);
    }
}
