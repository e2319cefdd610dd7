//! The ironsight server: the only place that does I/O.
//!
//! # Layout
//! - [`runtime`]: binds the listeners, starts one pinned glommio executor per core, stops on
//!   SIGTERM/SIGINT.
//! - [`cores`]: which CPUs get a shard.
//! - [`listen`]: `SO_REUSEPORT` listening sockets, one per shard, deep backlog.
//! - [`accept`]: a shard's listening sockets and their accept loops, opened and closed as the
//!   configuration asks.
//! - [`live_config`]: the running configuration, and a new one applied without a restart:
//!   generations the shards take up on their tick.
//! - [`shard_io`]: one shard's I/O around the core, tying the rooms below together.
//! - [`conns`]: the connection table: each connection's socket and transport state.
//! - [`link`]: the link to the other shards: channels, [`link::Envelope`]s, connections moving.
//! - [`overflow`]: messages for other shards that wait for room in a full channel, in order.
//! - [`flusher`]: one write pass per scheduling round.
//! - [`connection`]: the task of an active connection.
//! - [`verdicts`]: the auth service's verdicts, one inbox per shard, and their wake-ups.
//! - [`control`]: the admin API's link to the shards: snapshots on each tick, requests taken
//!   on each stop-poll, stop and restart; the applier of configuration changes.
//! - [`store`]: the durable store at start: the data directory locked and read back, the new
//!   generation of journals committed once every shard's snapshot is in it.
//! - [`journal`]: a shard's journal on disk: records gathered as the core makes them, one
//!   `O_DSYNC` write per batch, then "durable up to n" back to the core.
//! - [`log_budget`]: a bound on log lines a second, so that a flood of refusals is counted.
//! - [`notify`]: readiness for systemd (`READY=1` on `NOTIFY_SOCKET`).
//! - [`reload`]: SIGHUP reads the configuration file again and applies it; revocation lists
//!   are read again when they change.
//! - [`transport`]: everything between a socket and MQTT bytes: plain, parking, sending,
//!   lingering.
//!
//! # Invariants
//! - Every core call happens on the core's own executor; shards share nothing but channel
//!   messages ([`link::Envelope`]).
//! - A connection holds exactly one file descriptor, owned by its task while active and by the
//!   shard while parked.
//! - No borrow of the core or of the shard tables is held across an `.await`.

pub mod accept;
pub mod connection;
pub mod conns;
pub mod control;
pub mod cores;
pub mod flusher;
pub mod journal;
pub mod link;
pub mod listen;
pub mod live_config;
pub mod log_budget;
pub mod notify;
pub mod overflow;
pub mod reload;
pub mod resource_statistics;
pub mod runtime;
pub mod shard_io;
pub mod store;
pub mod transport;
pub mod verdicts;
