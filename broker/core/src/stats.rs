//! Counters a shard keeps about itself (the server logs them when the shard stops). Plain
//! integers: a shard is single-threaded.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// By endpoint number (grown when a connection names one beyond it).
    pub endpoints: Vec<EndpointStats>,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub protocol_errors: u64,
    /// Connections refused because the packet they began with (their CONNECT, or whatever
    /// they declared instead) was over `Endpoint.MaxConnectMessageSize`; also protocol errors.
    pub connects_too_large: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// Deliveries not made because a session's buffer was full (`RejectNewMessages`).
    pub messages_rejected: u64,
    /// Queued messages dropped to make room (`DiscardOldMessages`).
    pub messages_discarded: u64,
    /// Messages whose expiry passed before they could be sent.
    pub messages_expired: u64,
    /// Deliveries dropped because the packet exceeded the client's Maximum Packet Size.
    pub messages_oversize: u64,
    /// QoS 0 deliveries to disconnected sessions, which are not queued.
    pub messages_dropped_offline: u64,
    /// Connections closed because a packet did not arrive whole within `PacketTimeout`.
    pub packets_timed_out: u64,
    /// CONNECTs authenticated (the auth service accepted them).
    pub authentications_accepted: u64,
    /// CONNECTs the auth service refused, or that it did not answer in time.
    pub authentications_refused: u64,
    /// CONNECTs told the server is busy because `MaxPendingAuthentications` already waited.
    pub authentications_shed: u64,
    /// Connected clients disconnected because a configuration changed while they were
    /// connected no longer admits them (`shard/reconfigure.rs`).
    pub connections_revoked: u64,
    pub wills_published: u64,
    /// Disconnected-client notifications published on `$SYS/DisconnectedClientNotification`
    /// (one a client a round; one a consumer on another shard refused is published again).
    pub notifications_published: u64,
    pub sessions_expired: u64,
    /// Sessions taken up from the journal at start.
    pub sessions_restored: u64,
}

/// One endpoint's counters on one shard. A connection handed to the shard that owns its client
/// id is counted once, where it was accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Connections accepted (Amlen's Total).
    pub accepted: u64,
    /// Connections open on this shard now (Amlen's Active): may go below zero on one shard
    /// (a connection accepted here, handed to another shard and closed there), never in sum.
    pub active: i64,
    /// Connections that ended before their CONNECT was accepted (Amlen's BadConnections):
    /// refused by a policy or authentication, broken, timed out.
    pub bad: u64,
    /// PUBLISH packets received from clients.
    pub messages_in: u64,
    /// PUBLISH packets sent to clients.
    pub messages_out: u64,
}

impl Stats {
    /// The counters of endpoint `endpoint`.
    pub fn endpoint(&mut self, endpoint: u16) -> &mut EndpointStats {
        let index = usize::from(endpoint);
        if index >= self.endpoints.len() {
            self.endpoints
                .resize_with(index + 1, EndpointStats::default);
        }
        &mut self.endpoints[index]
    }
}
