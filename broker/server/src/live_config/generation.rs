//! The configuration as the shards run it, one generation at a time: the core's settings,
//! what each endpoint accepts, and the sockets each listens on. A new generation is published
//! whole; each shard looks for one on its stop-poll tick (50 ms), never on the message path,
//! takes it up, and says so, so that whoever published it can wait until every shard has.
//!
//! A shard that missed a generation (it was busy) goes straight to the latest: a generation
//! says what should be, not what changed, so nothing is lost by skipping one.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ironsight_config::Listener;
use ironsight_core::settings::Settings;
use ironsight_core::shard::Reconfigured;

use crate::listen;
use crate::transport::EndpointTransport;

/// One listening address of one endpoint: a socket per shard, bound together (`SO_REUSEPORT`)
/// before any shard listens on it, each taken once by its shard.
pub struct ListenerGroup {
    /// Tells groups apart across generations: a shard keeps listening on a group it has, and
    /// closes its socket of one no longer wanted.
    pub id: u64,
    /// The endpoint's number.
    pub endpoint: u16,
    /// Where it was asked to listen (port 0 included): an endpoint whose address does not
    /// change keeps its group.
    pub asked: SocketAddr,
    /// Where it listens.
    pub addr: SocketAddr,
    sockets: Vec<Mutex<Option<OwnedFd>>>,
}

impl ListenerGroup {
    /// Binds one socket per shard for `listener`. `ours` skips the check that nobody else
    /// listens on the port: this broker itself does, on an address that is being replaced.
    pub fn bind(
        id: u64,
        listener: &Listener,
        shards: usize,
        ours: bool,
    ) -> std::io::Result<ListenerGroup> {
        let bound = if ours {
            listen::bind_beside_own(listener, shards)?
        } else {
            listen::bind(listener, shards)?
        };
        Ok(ListenerGroup {
            id,
            endpoint: listener.endpoint,
            asked: listener.addr,
            addr: bound.addr,
            sockets: bound
                .per_shard
                .into_iter()
                .map(|fd| Mutex::new(Some(fd)))
                .collect(),
        })
    }

    /// Shard `shard`'s socket, the first time it asks.
    pub fn take(&self, shard: usize) -> Option<OwnedFd> {
        self.sockets[shard]
            .lock()
            .expect("never poisoned: no panics hold it")
            .take()
    }
}

/// What the shards run by.
pub struct Generation {
    pub number: u64,
    pub settings: Arc<Settings>,
    /// What each endpoint accepts, by endpoint number.
    pub endpoints: Vec<EndpointTransport>,
    /// Every address listened on, whichever endpoint it belongs to.
    pub listeners: Vec<Arc<ListenerGroup>>,
}

/// What one shard did with a generation.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardApplied {
    pub generation: u64,
    /// Time the shard spent on it (the core judging its connections, mostly).
    pub took: Duration,
    pub done: Reconfigured,
}

/// The latest generation, and what each shard last applied.
pub struct Generations {
    number: AtomicU64,
    current: Mutex<Arc<Generation>>,
    applied: Mutex<Vec<ShardApplied>>,
    applied_changed: Condvar,
}

impl Generations {
    pub fn new(first: Generation, shards: usize) -> Arc<Generations> {
        Arc::new(Generations {
            number: AtomicU64::new(first.number),
            current: Mutex::new(Arc::new(first)),
            applied: Mutex::new(vec![ShardApplied::default(); shards]),
            applied_changed: Condvar::new(),
        })
    }

    /// The latest generation's number: what a shard compares with its own on its tick.
    pub fn number(&self) -> u64 {
        self.number.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.lock().expect("never poisoned").clone()
    }

    /// Makes `generation` the latest; its number must follow the current one's.
    pub fn publish(&self, generation: Generation) {
        let number = generation.number;
        let mut current = self.current.lock().expect("never poisoned");
        assert_eq!(
            number,
            current.number + 1,
            "generations are published in order"
        );
        *current = Arc::new(generation);
        self.number.store(number, Ordering::Release);
    }

    /// Shard `shard` runs by `applied.generation` now.
    pub fn applied(&self, shard: usize, applied: ShardApplied) {
        self.applied.lock().expect("never poisoned")[shard] = applied;
        self.applied_changed.notify_all();
    }

    /// Waits until every shard applied generation `number` (or a later one), at most
    /// `timeout`. Returns what each did, `None` for a shard that had not yet.
    pub fn wait_applied(&self, number: u64, timeout: Duration) -> Vec<Option<ShardApplied>> {
        let deadline = Instant::now() + timeout;
        let mut applied = self.applied.lock().expect("never poisoned");
        while applied.iter().any(|a| a.generation < number) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            applied = self
                .applied_changed
                .wait_timeout(applied, left)
                .expect("never poisoned")
                .0;
        }
        applied
            .iter()
            .map(|a| (a.generation >= number).then_some(*a))
            .collect()
    }
}
