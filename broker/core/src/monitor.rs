//! What the administration API may ask a shard (`Shard::connections`, `Shard::subscriptions`,
//! `Shard::clients`, `Shard::gauges`, `Shard::close_connections`, `Shard::delete_session`),
//! and the answers: plain data, built on the shard and handed over whole. Names follow Amlen's
//! monitoring objects; the REST layer renders them with Amlen's field names.
//!
//! Each listing is a walk over the shard's table, made only when asked and bounded in what it
//! returns ([`RESULTS_MAX`]): the shard keeps its best `limit` by the requested order, and the
//! caller merges the shards' answers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironsight_codec::ProtocolVersion;

/// The most entries one listing returns (Amlen's largest ResultCount).
pub const RESULTS_MAX: usize = 100;

/// A name filter as Amlen's monitoring takes them: `*` matches any characters, anything else
/// itself. Several patterns (Amlen's comma lists, as close connection takes them) match what
/// any of them matches; none matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wildcard(Vec<String>);

impl Wildcard {
    /// Matches everything.
    pub fn any() -> Wildcard {
        Wildcard(Vec::new())
    }

    /// One pattern; empty or `*` matches everything.
    pub fn new(pattern: impl Into<String>) -> Wildcard {
        Wildcard::any_of([pattern.into()])
    }

    /// Any of `patterns`.
    pub fn any_of(patterns: impl IntoIterator<Item = String>) -> Wildcard {
        let patterns: Vec<String> = patterns.into_iter().collect();
        if patterns.iter().any(|p| p.is_empty() || p == "*") {
            return Wildcard::any();
        }
        Wildcard(patterns)
    }

    /// Whether it matches everything.
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, text: &str) -> bool {
        self.is_any() || self.0.iter().any(|p| glob(p, text))
    }
}

/// Whether `text` matches `pattern`, whose `*`s match any characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return text == pattern;
    }
    if !text.starts_with(first) || !text.ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Which connections: each filter given must match (Amlen's Connection and close connection
/// filters).
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilter {
    /// Endpoint names.
    pub endpoint: Wildcard,
    pub client_id: Wildcard,
    /// Connections without a user never match a filter that is given.
    pub user_id: Wildcard,
    /// The client's address as text (an IPv4 client in its IPv4 form).
    pub client_address: Wildcard,
}

impl ConnectionFilter {
    pub fn matches(&self, c: &ConnectionView) -> bool {
        self.endpoint.matches(&c.endpoint)
            && self.client_id.matches(&c.client_id)
            && (self.user_id.0.is_empty()
                || c.user_id
                    .as_deref()
                    .is_some_and(|u| self.user_id.matches(u)))
            && self.client_address.matches(&c.client_address.to_string())
    }
}

/// Amlen's Connection StatTypes: the order in which connections are listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionOrder {
    #[default]
    NewestConnection,
    OldestConnection,
    HighestThroughputMsgs,
    LowestThroughputMsgs,
    HighestThroughputKB,
    LowestThroughputKB,
}

/// One connected client.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionView {
    pub client_id: String,
    pub user_id: Option<String>,
    pub client_address: IpAddr,
    pub port: u16,
    pub endpoint: String,
    pub protocol: ProtocolVersion,
    /// How long it has been connected (from its accept).
    pub duration: Duration,
    pub read_msgs: u64,
    pub write_msgs: u64,
    /// Bytes on its socket, counted by the server (the core sees MQTT bytes only).
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl ConnectionView {
    /// Messages a second over the connection's life.
    pub fn msgs_per_s(&self) -> f64 {
        (self.read_msgs + self.write_msgs) as f64 / self.duration.as_secs_f64().max(1.0)
    }

    /// KB a second over the connection's life.
    pub fn kb_per_s(&self) -> f64 {
        (self.read_bytes + self.write_bytes) as f64 / 1024.0 / self.duration.as_secs_f64().max(1.0)
    }

    /// Sorts `list` in `order` and keeps the first `limit`.
    pub fn sort(list: &mut Vec<ConnectionView>, order: ConnectionOrder, limit: usize) {
        use std::cmp::Ordering;
        let by = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        list.sort_by(|a, b| match order {
            ConnectionOrder::NewestConnection => a.duration.cmp(&b.duration),
            ConnectionOrder::OldestConnection => b.duration.cmp(&a.duration),
            ConnectionOrder::HighestThroughputMsgs => by(b.msgs_per_s(), a.msgs_per_s()),
            ConnectionOrder::LowestThroughputMsgs => by(a.msgs_per_s(), b.msgs_per_s()),
            ConnectionOrder::HighestThroughputKB => by(b.kb_per_s(), a.kb_per_s()),
            ConnectionOrder::LowestThroughputKB => by(a.kb_per_s(), b.kb_per_s()),
        });
        list.truncate(limit);
    }
}

/// Which subscriptions (Amlen's Subscription monitor filters).
#[derive(Clone, Debug, Default)]
pub struct SubscriptionFilter {
    /// The filter's text (a shared subscription's group name for a shared one).
    pub sub_name: Wildcard,
    pub topic_string: Wildcard,
    pub client_id: Wildcard,
    /// `Some(true)`: only those of sessions that outlive their connection.
    pub durable: Option<bool>,
}

/// The orders ironsight can list subscriptions in: by the session queue it feeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriptionOrder {
    #[default]
    BufferedMsgsHighest,
    BufferedMsgsLowest,
    BufferedPercentHighest,
    BufferedPercentLowest,
}

/// One subscription. ironsight queues per session, not per subscription: the buffered counts
/// are those of the session's queue, which all its subscriptions feed.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionView {
    pub sub_name: String,
    pub topic_string: String,
    pub client_id: String,
    pub is_durable: bool,
    pub is_shared: bool,
    /// Messages queued or in flight for the session.
    pub buffered_msgs: u64,
    /// The session's MaxMessages.
    pub max_messages: u64,
}

impl SubscriptionView {
    pub fn buffered_percent(&self) -> f64 {
        100.0 * self.buffered_msgs as f64 / (self.max_messages.max(1)) as f64
    }

    /// Sorts `list` in `order` and keeps the first `limit`.
    pub fn sort(list: &mut Vec<SubscriptionView>, order: SubscriptionOrder, limit: usize) {
        use std::cmp::Ordering;
        let by = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        list.sort_by(|a, b| match order {
            SubscriptionOrder::BufferedMsgsHighest => b.buffered_msgs.cmp(&a.buffered_msgs),
            SubscriptionOrder::BufferedMsgsLowest => a.buffered_msgs.cmp(&b.buffered_msgs),
            SubscriptionOrder::BufferedPercentHighest => {
                by(b.buffered_percent(), a.buffered_percent())
            }
            SubscriptionOrder::BufferedPercentLowest => {
                by(a.buffered_percent(), b.buffered_percent())
            }
        });
        list.truncate(limit);
    }
}

/// A session (Amlen's MQTTClient): connected or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    pub client_id: String,
    pub is_connected: bool,
    /// When a disconnected session's connection ended, when the session says (one that never
    /// expires does not keep it).
    pub last_connected: Option<Instant>,
    /// When a disconnected session ends, if it does.
    pub expires_at: Option<Instant>,
    pub buffered_msgs: u64,
}

impl ClientView {
    /// Amlen's one MQTTClient order, LastConnectedTimeOldest: disconnected sessions that have
    /// waited longest first, connected ones last.
    pub fn sort(list: &mut Vec<ClientView>, limit: usize) {
        list.sort_by_key(|c| (c.is_connected, c.last_connected.is_none(), c.last_connected));
        list.truncate(limit);
    }
}

/// Figures a shard computes by walking its tables, when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub connections: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    /// Messages queued or in flight for sessions.
    pub buffered_msgs: u64,
    /// Topics with a retained message (every shard holds them all).
    pub retained_msgs: u64,
}

/// Why a session could not be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteRefusal {
    NotFound,
    /// A connected client's session is deleted by closing its connection first.
    Connected,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves Amlen's wildcard: `*` anywhere, any number of times, empty or `*` for all.
    #[test]
    fn wildcards_match_like_amlen() {
        let w = |p: &str| Wildcard::new(p);
        assert!(w("").matches("anything") && w("*").matches(""));
        assert!(w("abc").matches("abc") && !w("abc").matches("abcd"));
        assert!(w("a*").matches("a") && w("a*").matches("abc") && !w("a*").matches("ba"));
        assert!(w("*c").matches("abc") && !w("*c").matches("cb"));
        assert!(w("a*c*e").matches("abcde") && w("a*c*e").matches("ace"));
        assert!(!w("a*c*e").matches("abde") && !w("ab*ba").matches("aba"));
        assert!(w("10.0.*").matches("10.0.3.4") && !w("10.0.*").matches("10.1.0.0"));
        let list = Wildcard::any_of(["a".to_string(), "b*".to_string()]);
        assert!(list.matches("a") && list.matches("bc") && !list.matches("c"));
        assert!(Wildcard::any_of(["x".to_string(), "*".to_string()]).is_any());
    }
}
