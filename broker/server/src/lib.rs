//! The ironsight server: the only place that does I/O.
//!
//! # Layout
//! - [`runtime`]: binds the listeners, starts one pinned glommio executor per core, stops on
//!   SIGTERM/SIGINT.
//! - [`cores`]: which CPUs get a shard.
//! - [`listen`]: `SO_REUSEPORT` listening sockets, one per shard, deep backlog.
//! - [`shard_io`]: one shard's sockets, tasks, flusher and channels around the core.
//! - [`overflow`]: messages for other shards that wait for room in a full channel, in order.
//! - [`connection`]: the task of an active connection.
//! - [`parking`]: idle connections wait in epoll, without a task.
//! - [`send`]: vectored, non-blocking writes.
//! - [`linger`]: closing a socket without a reset destroying its last bytes.
//!
//! # Invariants
//! - Every core call happens on the core's own executor; shards share nothing but channel
//!   messages ([`shard_io::Envelope`]).
//! - A connection holds exactly one file descriptor, owned by its task while active and by the
//!   shard while parked.
//! - No borrow of the core or of the shard tables is held across an `.await`.

pub mod connection;
pub mod cores;
pub mod linger;
pub mod listen;
pub mod overflow;
pub mod parking;
pub mod runtime;
pub mod send;
pub mod shard_io;
