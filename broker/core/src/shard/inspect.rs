//! What the administration API sees of a shard and does to it (`crate::monitor`): listings
//! of its connections, subscriptions and sessions, figures that need a walk over its tables,
//! closing connections and deleting sessions. Nothing here runs unless an administrator asks;
//! a listing keeps at most twice its limit while it walks, however many entries match.

use std::time::{Duration, Instant};

use ironsight_codec::ReasonCode;

use super::Shard;
use crate::conn::{ConnId, ConnState};
use crate::monitor::{
    ClientView, ConnectionFilter, ConnectionOrder, ConnectionView, DeleteRefusal, Gauges,
    SubscriptionFilter, SubscriptionOrder, SubscriptionView, Wildcard,
};
use crate::session::{Session, EXPIRY_NEVER};
use crate::topic;

/// Keeps the best `limit` of a growing list: sorted and cut whenever it doubles.
struct Best<T, F> {
    items: Vec<T>,
    limit: usize,
    cut: F,
}

impl<T, F: Fn(&mut Vec<T>, usize)> Best<T, F> {
    fn new(limit: usize, cut: F) -> Self {
        Best {
            items: Vec::new(),
            limit,
            cut,
        }
    }

    fn push(&mut self, item: T) {
        self.items.push(item);
        if self.items.len() >= self.limit.max(1).saturating_mul(2) {
            (self.cut)(&mut self.items, self.limit);
        }
    }

    fn finish(mut self) -> Vec<T> {
        (self.cut)(&mut self.items, self.limit);
        self.items
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
        let mut best = Best::new(limit, |l: &mut Vec<_>, n| ConnectionView::sort(l, order, n));
        for (_, view) in self.connected(now, &bytes) {
            if filter.matches(&view) {
                best.push(view);
            }
        }
        best.finish()
    }

    /// Every connected client, as monitoring shows it.
    fn connected<'a>(
        &'a self,
        now: Instant,
        bytes: &'a dyn Fn(ConnId) -> (u64, u64),
    ) -> impl Iterator<Item = (ConnId, ConnectionView)> + 'a {
        self.conns.iter().filter_map(move |(id, c)| {
            if c.state != ConnState::Connected {
                return None;
            }
            let session = &self.sessions[c.session? as usize];
            let (read_bytes, write_bytes) = bytes(id as ConnId);
            let view = ConnectionView {
                client_id: session.client_id.to_string(),
                user_id: session.principal.as_ref().map(|p| p.user_id.to_string()),
                client_address: c.peer.ip,
                port: c.peer.port,
                endpoint: self.settings.endpoints[usize::from(c.endpoint)]
                    .name
                    .clone(),
                protocol: c.protocol,
                duration: self
                    .clock_instant(c.opened_at_s)
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
                read_msgs: c.msgs_in,
                write_msgs: c.msgs_out,
                read_bytes,
                write_bytes,
            };
            Some((id as ConnId, view))
        })
    }

    /// The subscriptions `filter` matches, the first `limit` in `order`.
    pub fn subscriptions(
        &self,
        filter: &SubscriptionFilter,
        order: SubscriptionOrder,
        limit: usize,
    ) -> Vec<SubscriptionView> {
        let mut best = Best::new(limit, |l: &mut Vec<_>, n| {
            SubscriptionView::sort(l, order, n)
        });
        for (_, s) in self.sessions.iter() {
            let durable = s.expiry_s > 0;
            if !filter.client_id.matches(&s.client_id)
                || filter.durable.is_some_and(|d| d != durable)
            {
                continue;
            }
            for sub in s.subscriptions.iter() {
                let parts = topic::parse_filter(&sub.text, usize::MAX, usize::MAX).ok();
                let topic_string = parts.map_or(&*sub.text, |p| p.filter);
                let sub_name = parts.and_then(|p| p.share_group).unwrap_or(topic_string);
                if !filter.sub_name.matches(sub_name) || !filter.topic_string.matches(topic_string)
                {
                    continue;
                }
                best.push(SubscriptionView {
                    sub_name: sub_name.to_string(),
                    topic_string: topic_string.to_string(),
                    client_id: s.client_id.to_string(),
                    is_durable: durable,
                    is_shared: sub.share.is_some(),
                    buffered_msgs: buffered(s),
                    max_messages: u64::from(s.queue_max),
                });
            }
        }
        best.finish()
    }

    /// The sessions whose client id `client_id` matches (connected ones only if `connected`
    /// allows), oldest disconnection first, at most `limit`.
    pub fn clients(
        &self,
        client_id: &Wildcard,
        connected: Option<bool>,
        limit: usize,
    ) -> Vec<ClientView> {
        let mut best = Best::new(limit, ClientView::sort);
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
            best.push(ClientView {
                client_id: s.client_id.to_string(),
                is_connected,
                last_connected,
                expires_at: s.expires_at.filter(|_| !is_connected),
                buffered_msgs: buffered(s),
            });
        }
        best.finish()
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
        let no_bytes = |_| (0, 0);
        let matching: Vec<ConnId> = self
            .connected(now, &no_bytes)
            .filter(|(_, view)| filter.matches(view))
            .map(|(conn, _)| conn)
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
