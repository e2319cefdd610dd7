//! What the administration API sees of a shard and does to it (`crate::monitor`): listings
//! of its connections, subscriptions and sessions, figures that need a walk over its tables,
//! closing connections and deleting sessions. Nothing here runs unless an administrator asks.
//!
//! A listing walks the whole table but allocates only for what it returns: each entry is first
//! a sort key and an index, of which it keeps at most twice its limit ([`Best`]); the views
//! (with their strings) are made for the winners only. `examples/monitor_cost.rs` times the
//! walks.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use ironsight_codec::ReasonCode;

use super::Shard;
use crate::conn::{ConnId, ConnState, Connection};
use crate::monitor::{
    ClientView, ConnectionFilter, ConnectionOrder, ConnectionView, DeleteRefusal, Gauges,
    SubscriptionFilter, SubscriptionOrder, SubscriptionView, Wildcard,
};
use crate::session::{Session, Subscription, EXPIRY_NEVER};
use crate::topic;

/// The `limit` entries with the smallest keys, kept as a walk offers them: the list is cut
/// back to `limit` whenever it reaches twice that.
struct Best<K, T> {
    items: Vec<(K, T)>,
    limit: usize,
}

impl<K: PartialOrd, T> Best<K, T> {
    fn new(limit: usize) -> Self {
        Best {
            items: Vec::new(),
            limit,
        }
    }

    fn push(&mut self, key: K, item: T) {
        self.items.push((key, item));
        if self.items.len() >= self.limit.max(1).saturating_mul(2) {
            self.cut();
        }
    }

    fn cut(&mut self) {
        let by_key = |a: &(K, T), b: &(K, T)| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal);
        if self.items.len() > self.limit && self.limit > 0 {
            self.items.select_nth_unstable_by(self.limit - 1, by_key);
        }
        self.items.truncate(self.limit);
        self.items.sort_by(by_key);
    }

    fn finish(mut self) -> impl Iterator<Item = T> {
        self.cut();
        self.items.into_iter().map(|(_, item)| item)
    }
}

/// A connection's place in `order`: smaller first.
fn connection_key(
    order: ConnectionOrder,
    duration: Duration,
    c: &Connection,
    bytes: (u64, u64),
) -> f64 {
    let seconds = duration.as_secs_f64().max(1.0);
    let msgs_per_s = (c.msgs_in + c.msgs_out) as f64 / seconds;
    let kb_per_s = (bytes.0 + bytes.1) as f64 / 1024.0 / seconds;
    match order {
        ConnectionOrder::NewestConnection => duration.as_secs_f64(),
        ConnectionOrder::OldestConnection => -duration.as_secs_f64(),
        ConnectionOrder::HighestThroughputMsgs => -msgs_per_s,
        ConnectionOrder::LowestThroughputMsgs => msgs_per_s,
        ConnectionOrder::HighestThroughputKB => -kb_per_s,
        ConnectionOrder::LowestThroughputKB => kb_per_s,
    }
}

/// A subscription's place in `order`: smaller first.
fn subscription_key(order: SubscriptionOrder, buffered: u64, max: u64) -> f64 {
    let percent = 100.0 * buffered as f64 / max.max(1) as f64;
    match order {
        SubscriptionOrder::BufferedMsgsHighest => -(buffered as f64),
        SubscriptionOrder::BufferedMsgsLowest => buffered as f64,
        SubscriptionOrder::BufferedPercentHighest => -percent,
        SubscriptionOrder::BufferedPercentLowest => percent,
    }
}

impl Shard {
    /// The connected clients `filter` matches, the first `limit` in `order`. `bytes` gives a
    /// connection's socket bytes read and written, which the server counts.
    pub fn connections(
        &self,
        now: Instant,
        filter: &ConnectionFilter,
        order: ConnectionOrder,
        limit: usize,
        bytes: impl Fn(ConnId) -> (u64, u64),
    ) -> Vec<ConnectionView> {
        let mut best = Best::new(limit);
        for (id, c, session) in self.connected(filter) {
            let conn = id as ConnId;
            let key = connection_key(order, self.connected_for(now, c), c, bytes(conn));
            best.push(key, (conn, c, session));
        }
        best.finish()
            .map(|(conn, c, session)| {
                let (read_bytes, write_bytes) = bytes(conn);
                ConnectionView {
                    client_id: session.client_id.to_string(),
                    user_id: session.principal.as_ref().map(|p| p.user_id.to_string()),
                    client_address: c.peer.ip,
                    port: c.peer.port,
                    endpoint: self.endpoint_name(c).to_string(),
                    protocol: c.protocol,
                    duration: self.connected_for(now, c),
                    read_msgs: c.msgs_in,
                    write_msgs: c.msgs_out,
                    read_bytes,
                    write_bytes,
                }
            })
            .collect()
    }

    /// The connected connections `filter` matches, with their sessions.
    fn connected<'a>(
        &'a self,
        filter: &'a ConnectionFilter,
    ) -> impl Iterator<Item = (usize, &'a Connection, &'a Session)> + 'a {
        self.conns.iter().filter_map(move |(id, c)| {
            if c.state != ConnState::Connected {
                return None;
            }
            let session = &self.sessions[c.session? as usize];
            let user = session.principal.as_ref().map(|p| &*p.user_id);
            filter
                .matches_parts(self.endpoint_name(c), &session.client_id, user, c.peer.ip)
                .then_some((id, c, session))
        })
    }

    fn endpoint_name(&self, c: &Connection) -> &str {
        &self.settings.endpoints[usize::from(c.endpoint)].name
    }

    /// How long `c` has been open (to the second: see `Connection::opened_at_s`).
    fn connected_for(&self, now: Instant, c: &Connection) -> Duration {
        self.clock_instant(c.opened_at_s)
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// The subscriptions `filter` matches, the first `limit` in `order`.
    pub fn subscriptions(
        &self,
        filter: &SubscriptionFilter,
        order: SubscriptionOrder,
        limit: usize,
    ) -> Vec<SubscriptionView> {
        let mut best: Best<f64, (&Session, &Subscription)> = Best::new(limit);
        for (_, s) in self.sessions.iter() {
            let durable = s.expiry_s > 0;
            if !filter.client_id.matches(&s.client_id)
                || filter.durable.is_some_and(|d| d != durable)
            {
                continue;
            }
            let key = subscription_key(order, buffered(s), u64::from(s.queue_max));
            let by_name = !filter.sub_name.is_any() || !filter.topic_string.is_any();
            for sub in s.subscriptions.iter() {
                // Parsing a filter costs more than the rest of the walk: only when asked.
                let matches = !by_name || {
                    let (sub_name, topic_string) = names(sub);
                    filter.sub_name.matches(sub_name) && filter.topic_string.matches(topic_string)
                };
                if matches {
                    best.push(key, (s, sub));
                }
            }
        }
        best.finish()
            .map(|(s, sub)| {
                let (sub_name, topic_string) = names(sub);
                SubscriptionView {
                    sub_name: sub_name.to_string(),
                    topic_string: topic_string.to_string(),
                    client_id: s.client_id.to_string(),
                    is_durable: s.expiry_s > 0,
                    is_shared: sub.share.is_some(),
                    buffered_msgs: buffered(s),
                    max_messages: u64::from(s.queue_max),
                }
            })
            .collect()
    }

    /// The sessions whose client id `client_id` matches (connected ones only if `connected`
    /// allows), oldest disconnection first, at most `limit`.
    pub fn clients(
        &self,
        client_id: &Wildcard,
        connected: Option<bool>,
        limit: usize,
    ) -> Vec<ClientView> {
        // Disconnected before connected, the longest disconnected first, unknown times last.
        type Key = (bool, bool, Option<Instant>);
        let mut best: Best<Key, (&Session, Option<Instant>)> = Best::new(limit);
        for (_, s) in self.sessions.iter() {
            let is_connected = s.conn.is_some();
            if !client_id.matches(&s.client_id) || connected.is_some_and(|c| c != is_connected) {
                continue;
            }
            // The expiry counts from the disconnection: the one gives the other back, unless
            // the session never expires.
            let last_connected = (!is_connected && s.expiry_s != EXPIRY_NEVER)
                .then(|| {
                    s.expires_at
                        .and_then(|at| at.checked_sub(Duration::from_secs(u64::from(s.expiry_s))))
                })
                .flatten();
            let key = (is_connected, last_connected.is_none(), last_connected);
            best.push(key, (s, last_connected));
        }
        best.finish()
            .map(|(s, last_connected)| ClientView {
                client_id: s.client_id.to_string(),
                is_connected: s.conn.is_some(),
                last_connected,
                expires_at: s.expires_at.filter(|_| s.conn.is_none()),
                buffered_msgs: buffered(s),
            })
            .collect()
    }

    /// Figures that need a walk over the sessions.
    pub fn gauges(&self) -> Gauges {
        let mut gauges = Gauges {
            connections: self.conns.len() as u64,
            sessions: self.sessions.len() as u64,
            retained_msgs: self.retained.len() as u64,
            ..Gauges::default()
        };
        for (_, s) in self.sessions.iter() {
            gauges.subscriptions += s.subscriptions.len() as u64;
            gauges.buffered_msgs += buffered(s);
        }
        gauges
    }

    /// Closes the connected clients `filter` matches: v5 clients are told Administrative
    /// action (0x98); wills stand, as for any connection the server ends. Returns how many.
    pub fn close_connections(&mut self, now: Instant, filter: &ConnectionFilter) -> usize {
        let matching: Vec<ConnId> = self
            .connected(filter)
            .map(|(conn, _, _)| conn as ConnId)
            .collect();
        for &conn in &matching {
            tracing::info!(conn, "connection closed by an administrator");
            self.disconnect(conn, now, ReasonCode::AdministrativeAction);
        }
        matching.len()
    }

    /// Deletes the session of `client_id`, which must not be connected: its subscriptions and
    /// queued messages go, and its will with them (the administrator discards the client's
    /// state; nothing is published for it).
    pub fn delete_session(&mut self, now: Instant, client_id: &str) -> Result<(), DeleteRefusal> {
        let session = self
            .find_session(client_id)
            .ok_or(DeleteRefusal::NotFound)?;
        if self.sessions[session as usize].conn.is_some() {
            return Err(DeleteRefusal::Connected);
        }
        tracing::info!(client_id, "session deleted by an administrator");
        self.sessions[session as usize].will = None;
        self.end_session(session, now);
        Ok(())
    }
}

fn buffered(s: &Session) -> u64 {
    s.delivery.as_ref().map_or(0, |d| d.buffered() as u64)
}

/// A subscription's name and topic filter, as Amlen shows them: a shared subscription is
/// named by its group, a plain one by its filter.
fn names(sub: &Subscription) -> (&str, &str) {
    let parts = topic::parse_filter(&sub.text, usize::MAX, usize::MAX).ok();
    let topic_string = parts.map_or(&*sub.text, |p| p.filter);
    (
        parts.and_then(|p| p.share_group).unwrap_or(topic_string),
        topic_string,
    )
}
