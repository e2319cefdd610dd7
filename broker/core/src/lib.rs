//! The ironsight broker core: everything an MQTT broker decides, and nothing it does.
//!
//! # Layout
//! - [`topic`]: topic name and filter rules, shared-subscription parsing.
//! - [`tree`]: the topic trie (filters matched by topics, topics matched by filters).
//! - [`journal`]: where a durable store plugs in: every change to durable state, in order.
//! - [`recovery`]: the journal's records read back at start, folded into sessions to restore.
//! - [`message`]: the application message, shared by every queue that holds it.
//! - [`outbuf`]: bytes waiting for a socket, small packets coalesced, large payloads shared.
//! - [`auth`]: what the core asks an authenticator between CONNECT and CONNACK, and its answer.
//! - [`conn`]: one network connection's protocol state.
//! - [`session`]: what outlives a connection: subscriptions, delivery state, will, expiry.
//! - [`queue`]: a session's queue, in-flight window and inbound QoS 2 state.
//! - [`policy`]: connection, topic and subscription policies: who may connect, publish,
//!   subscribe, share; safe substitution of `${UserID}`, `${ClientID}` and the others.
//! - [`interest`]: what the other shards subscribe to, posted before a SUBSCRIBE returns.
//! - [`notification`]: disconnected-client notification: marked subscriptions, what arrived
//!   on them while their session was away, and the bounded rounds that publish it.
//! - [`routing`]: shard sets, local subscriptions, shared groups, messages between shards.
//! - [`settings`]: the limits the core enforces, from the configuration objects.
//! - [`shard`]: the state machine tying these together for one core.
//! - [`stats`]: counters a shard keeps about itself, per endpoint too.
//! - [`monitor`]: what the administration API asks a shard (connections, subscriptions,
//!   sessions, gauges; closing connections, deleting sessions) and the answers.
//! - [`violation`]: protocol violations by normative id, and the reason code each is answered with.
//!
//! # Invariants
//! - No I/O and no clock: the server passes bytes and `Instant`s in and takes bytes out, so every
//!   behaviour here is testable without sockets or sleeping.
//! - A client id belongs to exactly one shard ([`shard::Shard::owner_of`]); its session is only
//!   ever touched there. Shards share nothing but [`routing::ShardMsg`]s.
//! - Every buffer a peer can grow has a named bound in [`settings`].

pub mod auth;
pub mod conn;
pub mod interest;
pub mod journal;
pub mod message;
pub mod monitor;
pub mod notification;
pub mod outbuf;
pub mod policy;
pub mod queue;
pub mod recovery;
pub mod routing;
pub mod session;
pub mod settings;
pub mod shard;
pub mod stats;
pub mod topic;
pub mod tree;
pub mod violation;

pub use shard::{Event, Handoff, RefusedFor, Shard};
