//! The API's side of its link to the shards. The server implements [`Shards`]: counters that
//! each shard publishes on its one-second tick ([`ShardSnapshot`], read without waking a
//! shard), and [`Request`]s that a shard takes from its inbox on its next stop-poll (every
//! 50 ms) and answers over a oneshot channel. The API waits for the answers at most
//! [`ANSWER_TIMEOUT`]; a shard never waits for the API.

use std::time::{Duration, Instant};

use ironsight_core::monitor::{
    ClientView, ConnectionFilter, ConnectionOrder, ConnectionView, DeleteRefusal, Gauges,
    SubscriptionFilter, SubscriptionOrder, SubscriptionView, Wildcard,
};
use ironsight_core::stats::{EndpointStats, Stats};
use tokio::sync::oneshot;

use crate::error::{Code, Refusal};

/// How long the API waits for the shards' answers: a shard answers within its stop-poll
/// (50 ms) unless it is stopping or far behind.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One shard's counters, as it published them on its last tick.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub stats: Stats,
    /// By endpoint number: the endpoint's name and its socket bytes (the server counts them).
    pub endpoints: Vec<EndpointSnapshot>,
    pub connections: u64,
    pub sessions: u64,
    /// The shard's gauges (a walk over its sessions), taken only while someone subscribes to
    /// `$SYS/ResourceStatistics/Server`.
    pub gauges: Option<Gauges>,
    /// The shard thread's id, for its CPU time in /proc.
    pub thread_id: i32,
    pub at: Option<Instant>,
}

/// One endpoint on one shard.
#[derive(Clone, Debug, Default)]
pub struct EndpointSnapshot {
    pub name: String,
    pub stats: EndpointStats,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// What the API asks a shard.
#[derive(Clone, Debug)]
pub enum Query {
    Connections {
        filter: ConnectionFilter,
        order: ConnectionOrder,
        limit: usize,
    },
    Subscriptions {
        filter: SubscriptionFilter,
        order: SubscriptionOrder,
        limit: usize,
    },
    Clients {
        client_id: Wildcard,
        connected: Option<bool>,
        limit: usize,
    },
    Gauges,
    Close(ConnectionFilter),
    DeleteSession(String),
}

/// A shard's answer to a [`Query`] of the same name.
#[derive(Debug)]
pub enum Reply {
    Connections(Vec<ConnectionView>),
    Subscriptions(Vec<SubscriptionView>),
    Clients(Vec<ClientView>),
    Gauges(Gauges),
    Closed(usize),
    Deleted(Result<(), DeleteRefusal>),
}

/// A query on its way to a shard, with where its answer goes.
#[derive(Debug)]
pub struct Request {
    pub query: Query,
    reply: oneshot::Sender<Reply>,
}

impl Request {
    /// Sends the shard's answer (nobody may be waiting any more: the API timed out).
    pub fn answer(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }
}

/// The broker as the API sees it.
pub trait Shards: Send + Sync + 'static {
    fn count(&self) -> usize;
    /// Every shard's latest snapshot, by shard number.
    fn snapshots(&self) -> Vec<ShardSnapshot>;
    /// Puts `request` in shard `shard`'s inbox; never blocks.
    fn ask(&self, shard: usize, request: Request);
    /// Stops the broker as SIGTERM does; `restart`: it starts again afterwards.
    fn stop(&self, restart: bool);
}

/// Asks every shard, and waits for all their answers (at most [`ANSWER_TIMEOUT`] in all).
pub async fn ask_all(shards: &dyn Shards, query: Query) -> Result<Vec<Reply>, Refusal> {
    let mut waiting = Vec::with_capacity(shards.count());
    for shard in 0..shards.count() {
        let (reply, answer) = oneshot::channel();
        shards.ask(
            shard,
            Request {
                query: query.clone(),
                reply,
            },
        );
        waiting.push(answer);
    }
    let all = async {
        let mut replies = Vec::with_capacity(waiting.len());
        for answer in waiting {
            replies.push(answer.await.ok()?);
        }
        Some(replies)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, all).await {
        Ok(Some(replies)) => Ok(replies),
        _ => Err(Refusal::new(
            Code::Unavailable,
            format!(
                "the shards did not answer within {} s; the broker may be stopping",
                ANSWER_TIMEOUT.as_secs()
            ),
        )),
    }
}
