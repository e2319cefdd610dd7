//! The limits and behaviours the core enforces, already validated. The configuration crate turns
//! MessageSight's JSON objects into these; the core never sees JSON. Every bound on memory that a
//! peer could otherwise grow is a named field here, units last.

use crate::policy::{
    ClientFilters, ConnectionRule, Pattern, PatternKind, SubscriptionRule, TopicRule,
};
use crate::queue::QueueBehavior;

/// The most shards a broker runs: shard sets are one machine word.
pub const SHARDS_MAX: usize = 64;

/// Broker-wide settings (the `Broker` configuration object).
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// Unacknowledged QoS 1/2 messages in flight to one client (capped by its Receive Maximum),
    /// and the Receive Maximum advertised to v5 clients.
    pub inflight_max: u16,
    /// Topic Alias Maximum advertised to v5 clients (client-to-server aliases); 0 disables them.
    pub topic_aliases_max: u16,
    /// Aliases the broker assigns towards one v5 client, capped by the client's own maximum.
    pub outbound_aliases_max: u16,
    /// Keep alive imposed on v5 clients (Server Keep Alive); `None` keeps the client's value.
    pub server_keepalive_s: Option<u16>,
    /// The longest keep alive a client may have (`MaxKeepAlive`); `None`: no cap. A v5 client
    /// that asks for more, or for none, is told this one; a v3 client that does is refused.
    pub keepalive_max_s: Option<u16>,
    pub subscriptions_max: usize,
    pub client_id_len_max: usize,
    pub topic_len_max: usize,
    pub topic_levels_max: usize,
    /// Bytes encoded for one connection and not yet written before further deliveries wait in
    /// the session queue (a client that never reads holds at most this much plus its queue).
    pub send_buffer_max: usize,
    /// Seconds a new connection may take to send CONNECT.
    pub connect_timeout_s: u16,
    /// Seconds a packet may take to arrive whole once its first byte has, after CONNECT (before
    /// it, `connect_timeout_s` bounds everything). A fixed bound, not one derived from the keep
    /// alive: the client chooses its keep alive, 0 (none) or up to 18 hours included. The clock
    /// also runs while the server does not read from a client that does not read its own
    /// output (`send_buffer_max`): such a client may be cut by it too.
    pub packet_timeout_s: u16,
    /// Retained messages kept; a new retained topic beyond this is not stored.
    pub retained_max: usize,
    /// Sessions one shard holds (connected or not); CONNECTs beyond it get Server Unavailable.
    pub sessions_max: usize,
    /// Seconds a CONNECT may wait for its authentication (`AuthenticationTimeout`); then the
    /// client is told the server is unavailable.
    pub authentication_timeout_s: u16,
    /// CONNECTs one shard lets wait for authentication at once (`MaxPendingAuthentications`);
    /// more are told the server is busy, so that a slow directory and a connection storm
    /// cannot grow a shard's memory.
    pub pending_authentications_max: usize,
    /// Seconds between rounds of disconnected-client notification
    /// (`DisconnClientNotifInterval`, at least [`crate::notification::INTERVAL_MIN_S`]).
    pub notification_interval_s: u16,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            inflight_max: 128,
            topic_aliases_max: 16,
            outbound_aliases_max: 64,
            server_keepalive_s: None,
            keepalive_max_s: None,
            subscriptions_max: 1000,
            client_id_len_max: 1024,
            topic_len_max: 65535,
            topic_levels_max: 32,
            send_buffer_max: 256 * 1024,
            connect_timeout_s: 10,
            // A 4 MB packet (the default MaxMessageSize) needs 280 kbit/s to arrive in 120 s: a
            // 3G uplink carries it; a packet of some kilobytes needs a few hundred bit/s.
            packet_timeout_s: 120,
            retained_max: 1_000_000,
            sessions_max: 2_000_000,
            authentication_timeout_s: 10,
            pending_authentications_max: 10_000,
            notification_interval_s: crate::notification::INTERVAL_DEFAULT_S,
        }
    }
}

/// Per-endpoint settings: an `Endpoint` with its policies compiled, in the endpoint's order.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    pub name: String,
    /// False for an endpoint disabled or removed while the broker runs: it keeps its number
    /// (connections, retained messages' publishers and the auth service know endpoints by
    /// number), takes no connection and has none.
    pub enabled: bool,
    /// `Endpoint.MaxMessageSize`: the largest packet accepted, and advertised as Maximum Packet Size.
    pub packet_size_max: u32,
    /// `Endpoint.MaxConnectMessageSize`: the largest packet accepted before CONNECT completes,
    /// the CONNECT itself (a peer not yet admitted deserves little); at most `packet_size_max`.
    pub connect_packet_size_max: u32,
    /// Whether a CONNECT here is authenticated (its SecurityProfile uses passwords or client
    /// certificates as identity): it waits for the auth service's verdict before its CONNACK.
    pub authenticate: bool,
    /// `Endpoint.ConnectionPolicies`: a client must be admitted by one of them.
    pub connection_rules: Vec<ConnectionRule>,
    /// `Endpoint.TopicPolicies`: what admitted clients may publish and subscribe to, and the
    /// queue limits of their sessions.
    pub topic_rules: Vec<TopicRule>,
    /// `Endpoint.SubscriptionPolicies`: who may join and create shared subscriptions. Empty:
    /// the TopicPolicies alone decide (Amlen's rule for non-durable shared subscriptions).
    pub subscription_rules: Vec<SubscriptionRule>,
}

impl Default for EndpointSettings {
    /// The demo endpoint: anyone may connect, publish and subscribe anywhere.
    fn default() -> Self {
        EndpointSettings {
            name: "DemoEndpoint".into(),
            enabled: true,
            packet_size_max: 4096 * 1024,
            connect_packet_size_max: 64 * 1024,
            authenticate: false,
            connection_rules: vec![ConnectionRule {
                name: "DemoConnectionPolicy".into(),
                filters: ClientFilters::default(),
                allow_durable: true,
                allow_persistent: true,
                session_expiry_max_s: u32::MAX,
            }],
            topic_rules: vec![TopicRule {
                name: "DemoTopicPolicy".into(),
                filters: ClientFilters::default(),
                topic: Pattern::parse("*", PatternKind::Topic).expect("valid pattern"),
                publish: true,
                subscribe: true,
                queue_messages_max: 5000,
                queue_behavior: QueueBehavior::RejectNewMessages,
                message_ttl_max_s: None,
                disconnected_client_notification: false,
            }],
            subscription_rules: Vec::new(),
        }
    }
}

impl EndpointSettings {
    /// Whether `other` admits and authorises every client exactly as this one does: the same
    /// policies, compiled the same, in the same order. Connected clients are checked again
    /// only where this changed.
    pub fn same_policies(&self, other: &EndpointSettings) -> bool {
        self.connection_rules == other.connection_rules
            && self.topic_rules == other.topic_rules
            && self.subscription_rules == other.subscription_rules
    }
}

#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub broker: BrokerSettings,
    /// Indexed by the endpoint number a connection carries.
    pub endpoints: Vec<EndpointSettings>,
}
