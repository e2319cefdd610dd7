//! One network connection as the core sees it: protocol state, the partial frame read so far, the
//! bytes waiting to be written, and what the client told us about itself in CONNECT. The session
//! it serves lives apart (`session.rs`), because a session outlives its connections.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::time::Instant;

use hashbrown::HashMap;
use ironsight_codec::{ByteString, BytesMut, ProtocolVersion};

use crate::outbuf::OutBuf;
use crate::session::SessionIdx;

pub type ConnId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Accepted; the first packet must be CONNECT.
    AwaitingConnect,
    /// Its CONNECT waits for the auth service's verdict (`crate::auth`); nothing more is read
    /// from it meanwhile.
    Authenticating,
    Connected,
    /// Its client id belongs to another shard; the socket moves there (`Event::Handoff`).
    HandedOff,
    /// The core is done with it: the server writes what is in `out`, then closes the socket.
    Closing,
}

/// What a v5 client declared in CONNECT (v3 clients get the defaults).
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Receive Maximum: QoS 1/2 messages the client accepts unacknowledged.
    pub receive_max: u16,
    /// Maximum Packet Size the client accepts.
    pub packet_size_max: u32,
    /// Topic Alias Maximum for server-to-client aliases.
    pub topic_alias_max: u16,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            receive_max: u16::MAX,
            packet_size_max: u32::MAX,
            topic_alias_max: 0,
        }
    }
}

/// What the broker told the client in its CONNACK about what it accepts: promises that hold for
/// the connection's life, so a configuration changed while it is connected applies to later
/// connections. (v3 clients are told nothing, and held to the same values.)
#[derive(Clone, Copy, Debug)]
pub struct Granted {
    /// Receive Maximum: QoS 1/2 PUBLISHes the client may have unacknowledged
    /// (`Broker.MaxInflightMessages` when it connected).
    pub receive_max: u16,
    /// Topic Alias Maximum for client-to-server aliases (`Broker.MaxTopicAliases`), which
    /// also sizes the connection's alias table.
    pub topic_alias_max: u16,
}

/// Topic alias tables of one v5 connection; allocated on the first alias only.
#[derive(Debug, Default)]
pub struct Aliases {
    /// Client-to-server: index `alias - 1`.
    pub inbound: Vec<Option<ByteString>>,
    /// Server-to-client, assigned on first use until the client's maximum is reached.
    pub outbound: HashMap<ByteString, NonZeroU16>,
}

/// The peer's address in 20 bytes rather than `SocketAddr`'s 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub ip: IpAddr,
    pub port: u16,
}

impl From<SocketAddr> for PeerAddr {
    /// An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`; it is kept as the
    /// IPv4 address it is, so that logs and address policies see one form.
    fn from(addr: SocketAddr) -> Self {
        PeerAddr {
            ip: addr.ip().to_canonical(),
            port: addr.port(),
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(peer: PeerAddr) -> Self {
        SocketAddr::new(peer.ip, peer.port)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketAddr::from(*self).fmt(f)
    }
}

/// A client certificate the transport verified: the facts about it that policies may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's first common name (CN); empty when the subject has none.
    pub common_name: Box<str>,
}

/// What a transport established about the peer before the first MQTT byte. The core knows
/// nothing else of transports: not whether bytes arrived in WebSocket frames, nor how TLS was
/// negotiated.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The client's address: the socket's peer, or the address a PROXY protocol header gave.
    pub peer: SocketAddr,
    /// Whether the connection is encrypted.
    pub secure: bool,
    pub certificate: Option<Box<ClientCertificate>>,
}

/// The bytes of a packet split across reads, and when it began: one word, and no allocation,
/// between packets. The codec's `Framer` finds where packets end (`shard/input.rs`); this only
/// keeps the bytes of one that is not whole yet, and the clock of `Broker.PacketTimeout`, which
/// is the core's: the codec knows no time.
#[derive(Debug, Default)]
pub struct InBuf(Option<Box<Partial>>);

#[derive(Debug)]
struct Partial {
    bytes: BytesMut,
    /// When the first byte of the packet at the front arrived: it must be whole within
    /// `BrokerSettings::packet_timeout_s` of this.
    since: Instant,
}

impl InBuf {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|p| p.bytes.is_empty())
    }

    /// When the first byte of the packet still waiting for its rest arrived.
    pub fn since(&self) -> Option<Instant> {
        self.0
            .as_ref()
            .filter(|p| !p.bytes.is_empty())
            .map(|p| p.since)
    }

    /// Appends `data`, which arrived at `now`, reserving room for `frame_len` bytes in all when
    /// the frame's length is known.
    pub fn extend(&mut self, data: &[u8], frame_len: usize, now: Instant) {
        let p = self.partial(now);
        if p.bytes.is_empty() {
            p.since = now;
        }
        p.bytes
            .reserve(frame_len.saturating_sub(p.bytes.len()).max(data.len()));
        p.bytes.extend_from_slice(data);
    }

    /// The bytes, to be processed and put back; the packet's start time stays meanwhile.
    pub fn take(&mut self) -> BytesMut {
        self.0
            .as_mut()
            .map_or_else(BytesMut::new, |p| std::mem::take(&mut p.bytes))
    }

    /// Keeps what is left of a buffer after `consumed` bytes were processed at `now`: if a
    /// packet was completed, what is left began a new one. Nothing is kept for an empty rest.
    pub fn put_back(&mut self, rest: BytesMut, consumed: usize, now: Instant) {
        if rest.is_empty() {
            self.0 = None;
            return;
        }
        let p = self.partial(now);
        if consumed > 0 {
            p.since = now;
        }
        p.bytes = rest;
    }

    fn partial(&mut self, now: Instant) -> &mut Partial {
        self.0.get_or_insert_with(|| {
            Box::new(Partial {
                bytes: BytesMut::new(),
                since: now,
            })
        })
    }
}

#[derive(Debug)]
pub struct Connection {
    pub state: ConnState,
    pub protocol: ProtocolVersion,
    pub endpoint: u16,
    /// Bumped on every new connection in this slot, so that stale references can be told apart.
    pub generation: u32,
    pub session: Option<SessionIdx>,
    pub peer: PeerAddr,
    /// Whether the transport encrypts the connection (TLS).
    pub secure: bool,
    /// The client certificate the transport verified, if the client presented one.
    pub certificate: Option<Box<ClientCertificate>>,
    /// Keep alive in force (the client's, or the server's for v5); 0 disables the check.
    pub keepalive_s: u16,
    /// When the last whole packet arrived (or the connection opened): keep alive and the
    /// CONNECT timeout count from here. Bytes of an unfinished packet do not count.
    pub last_packet_at: Instant,
    pub client: ClientLimits,
    /// What the broker granted it in CONNACK.
    pub granted: Granted,
    /// v5 Request Problem Information: whether reason strings may be sent.
    pub problem_info: bool,
    /// Whether its ConnectionPolicy lets it publish at QoS 1 and 2.
    pub allow_persistent: bool,
    /// Its ConnectionPolicy's cap on the Session Expiry Interval, also applied at DISCONNECT.
    pub session_expiry_max_s: u32,
    /// A partial frame: its bytes so far. Empty (and unallocated) between packets.
    pub inbuf: InBuf,
    pub out: OutBuf,
    pub aliases: Option<Box<Aliases>>,
    /// Input is held (left in `inbuf`, or in the socket) while a SUBSCRIBE is in progress.
    pub paused: bool,
    /// Already in the shard's list of connections with new output.
    pub dirty: bool,
    /// The client sent DISCONNECT: after it, it sends nothing more ([MQTT-3.14.4-1]).
    pub peer_disconnected: bool,
    /// Its CONNECT was accepted at some point (one that never was counts as a bad connection).
    pub was_connected: bool,
    /// When it was accepted (or adopted from another shard), in seconds of the shard's clock
    /// (`Shard::clock_s`): for monitoring, where a second is precise enough, in 4 bytes
    /// rather than an `Instant`'s 16.
    pub opened_at_s: u32,
    /// PUBLISH packets received from the client and sent to it: for monitoring.
    pub msgs_in: u64,
    pub msgs_out: u64,
}

impl Connection {
    pub fn new(
        now: Instant,
        opened_at_s: u32,
        endpoint: u16,
        peer: SocketAddr,
        generation: u32,
    ) -> Connection {
        Connection {
            state: ConnState::AwaitingConnect,
            protocol: ProtocolVersion::V3_1_1,
            endpoint,
            generation,
            session: None,
            peer: peer.into(),
            secure: false,
            certificate: None,
            keepalive_s: 0,
            last_packet_at: now,
            client: ClientLimits::default(),
            granted: Granted {
                receive_max: 0,
                topic_alias_max: 0,
            },
            problem_info: true,
            allow_persistent: true,
            session_expiry_max_s: u32::MAX,
            inbuf: InBuf::default(),
            out: OutBuf::default(),
            aliases: None,
            paused: false,
            dirty: false,
            peer_disconnected: false,
            was_connected: false,
            opened_at_s,
            msgs_in: 0,
            msgs_out: 0,
        }
    }

    pub fn is_v5(&self) -> bool {
        self.protocol.is_v5()
    }

    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            ConnState::AwaitingConnect | ConnState::Authenticating | ConnState::Connected
        )
    }

    pub fn aliases(&mut self) -> &mut Aliases {
        self.aliases.get_or_insert_with(Box::default)
    }
}
