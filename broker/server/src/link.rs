//! The shard's link to the other shards: the channels of the mesh, the messages that wait for
//! room in a full one, and the connections that move between shards.
//!
//! A shard never waits on a full channel in a connection's task: the message goes into the
//! overflow, in order per peer, and one drainer task waits instead. Past `OVERFLOW_HIGH` waiting
//! messages, connections stop reading (they ask [`ShardLink::is_throttled`]) until it drains.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll, Waker};

use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use ironsight_core::routing::{ShardId, ShardMsg};
use ironsight_core::Handoff;

use crate::overflow::Overflow;
use crate::transport::Transport;

/// Messages waiting for full channels to other shards before connections stop reading.
pub const OVERFLOW_HIGH: usize = 4096;

/// What travels between shards.
pub enum Envelope {
    /// A message for the other shard's core.
    Core(ShardMsg),
    /// A connection whose client id the other shard owns. Boxed: it is rare, and keeps every
    /// envelope small.
    Adopt(Box<Adopted>),
}

/// A connection moving to another shard: what its core knew, its socket, and its transport's
/// state (a TLS session's keys, a WebSocket's framing), so that it continues there mid-stream.
pub struct Adopted {
    pub handoff: Box<Handoff>,
    pub fd: OwnedFd,
    pub transport: Transport,
}

pub struct ShardLink {
    senders: Senders<Envelope>,
    overflow: RefCell<Overflow<Envelope>>,
    /// The drainer task, when it waits for the overflow to fill.
    drainer: RefCell<Option<Waker>>,
    /// Connection tasks that stopped reading because the overflow is long.
    throttled: RefCell<Vec<Waker>>,
}

impl ShardLink {
    pub fn new(senders: Senders<Envelope>) -> ShardLink {
        let peers = senders.nr_consumers();
        ShardLink {
            senders,
            overflow: RefCell::new(Overflow::new(peers)),
            drainer: RefCell::new(None),
            throttled: RefCell::new(Vec::new()),
        }
    }

    /// Sends without waiting: a full channel keeps the message, in order, in the overflow.
    pub fn send(&self, to: ShardId, envelope: Envelope) {
        let peer = usize::from(to);
        let mut overflow = self.overflow.borrow_mut();
        let envelope = if overflow.may_send_directly(peer) {
            match self.senders.try_send_to(peer, envelope) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(envelope))) => envelope,
                Err(_) => return, // the other shard is stopping
            }
        } else {
            envelope
        };
        overflow.push(peer, envelope);
        if let Some(waker) = self.drainer.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Whether a connection should stop reading because too much waits for other shards; if
    /// so, its task is woken when the overflow has drained to half.
    pub fn is_throttled(&self, cx: &Context<'_>) -> bool {
        if self.overflow.borrow().waiting() < OVERFLOW_HIGH {
            return false;
        }
        self.throttled.borrow_mut().push(cx.waker().clone());
        true
    }

    /// The drainer task: waits on full channels so that nothing else has to.
    pub async fn drain(&self) {
        loop {
            let (peer, envelope) = futures_lite::future::poll_fn(|cx| {
                if let Some(next) = self.overflow.borrow_mut().take_next() {
                    return Poll::Ready(next);
                }
                *self.drainer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            // A peer that is stopping takes nothing more; its messages are dropped, as in
            // `send`, and the others' keep flowing.
            let _ = self.senders.send_to(peer, envelope).await;
            let left = self.overflow.borrow_mut().sent();
            if left < OVERFLOW_HIGH / 2 {
                for waker in self.throttled.borrow_mut().drain(..) {
                    waker.wake();
                }
            }
        }
    }
}
