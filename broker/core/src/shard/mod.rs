//! One shard of the broker: every connection and session a core owns, and its view of the rest.
//!
//! The shard is a state machine without I/O: the server feeds it bytes, closed sockets, messages
//! from other shards and the time; it answers with bytes in each connection's [`OutBuf`], messages
//! for other shards in its outbox, and [`Event`]s. Nothing here blocks, sleeps or reads a clock.
//!
//! The work is split by packet family and by the state it keeps, as mosquitto splits its files:
//! `input` (framing and dispatch), `connect` (CONNECT, takeover, resume), `publish` (inbound
//! PUBLISH and its acks), `acks` (acknowledging inbound PUBLISHes in order), `route` (which
//! shards and sessions a message goes to), `deliver` (into one session: its connection or its
//! queue), `encode` (PUBLISH bytes, one encoding per fan-out), `retained` (the retained store),
//! `subscribe` (SUBSCRIBE/UNSUBSCRIBE, shared groups, interest), `lifecycle` (closing, wills,
//! session end), `timers` (keep alive, will delay, session expiry), `remote` (messages from
//! other shards), `restore` (state from the journal at start, and snapshots), `authorize` (the
//! policies' decisions and what follows from them), `inspect` (what the administration API
//! lists and does: `crate::monitor`), `reconfigure` (a configuration changed while the broker
//! runs, and the connections judged again under it), `notify` (disconnected-client
//! notification: marks, arrivals, and the rounds that publish them).

mod acks;
mod authorize;
mod connect;
mod deliver;
mod durability;
mod encode;
mod input;
mod inspect;
mod lifecycle;
mod notify;
mod publish;
mod reconfigure;
mod remote;
mod restore;
mod retained;
mod route;
mod subscribe;
mod system;
mod timers;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::{HashMap, HashTable};
use ironsight_codec::{ByteString, Bytes, Disconnect, DisconnectProperties, Packet, ReasonCode};
use slab::Slab;

use crate::auth::AuthRequest;
use crate::conn::{ConnId, ConnState, Connection, Identity};
use crate::interest::{Interest, InterestBoard, InterestChange};
use crate::journal::{Journal, MemoryOnly, Record};
use crate::message::message_id;
use crate::outbuf::OutBuf;
use crate::queue::ShareId;
use crate::routing::{LocalSubs, ShardId, ShardMsg, ShareGroup, ShareKey};
use crate::session::{Session, SessionIdx};
use crate::settings::{EndpointSettings, Settings};
use crate::stats::Stats;
use crate::tree::TopicTree;
use crate::violation::Violation;

pub use reconfigure::{Reconfigured, RECHECK_LOGGED_MAX};
pub use restore::SnapshotCursor;
pub use route::Target;
pub use subscribe::SUBSCRIBE_SLICE;

/// What the server must do that the shard cannot: move a socket to another core, ask the auth
/// service about a CONNECT, log a refused connection within its budget.
#[derive(Debug)]
pub enum Event {
    /// A connection was refused before it was accepted. The server logs it at the default
    /// level, as operators expect, but within a budget a flood of refusals cannot exceed: the
    /// core does not know time enough to keep one.
    Refused {
        peer: SocketAddr,
        client_id: Option<Box<str>>,
        why: RefusedFor,
    },
    /// Hand this CONNECT to the auth service; its verdict comes back to
    /// [`Shard::authenticated`].
    Authenticate(Box<AuthRequest>),
    /// `conn` belongs to shard `to` (its client id hashes there). The shard has already forgotten
    /// it; the server moves the socket there, where [`Shard::adopt`] takes `handoff` up.
    Handoff {
        conn: ConnId,
        to: ShardId,
        handoff: Box<Handoff>,
    },
}

/// Why a connection was refused before it was accepted.
#[derive(Clone, Copy, Debug)]
pub enum RefusedFor {
    /// Its bytes were no CONNECT the broker accepts: not MQTT, a protocol version it does not
    /// speak, a malformed packet.
    Protocol(Violation),
    /// Its CONNECT was answered with this reason code, for this cause.
    Connect(ReasonCode, &'static str),
    /// No CONNECT came within `Broker.ConnectTimeout`.
    NoConnect,
}

impl std::fmt::Display for RefusedFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusedFor::Protocol(violation) => write!(f, "bad protocol: {violation}"),
            RefusedFor::Connect(reason, cause) => write!(f, "{cause} ({reason:?})"),
            RefusedFor::NoConnect => f.write_str("no CONNECT within Broker.ConnectTimeout"),
        }
    }
}

/// A connection moving to the shard that owns its client id: what the core knew of it, its
/// CONNECT frame, and whatever the client sent after the CONNECT.
#[derive(Debug)]
pub struct Handoff {
    pub endpoint: u16,
    pub identity: Identity,
    pub connect: Bytes,
    pub rest: Bytes,
}

/// A timer on a session, checked lazily: it is stale when the session's generation moved on or
/// its deadline changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    session: SessionIdx,
    generation: u32,
}

pub struct Shard {
    pub id: ShardId,
    pub shard_count: u16,
    settings: Arc<Settings>,
    conns: Slab<Connection>,
    sessions: Slab<Session>,
    /// Client id -> session, storing only the index: the key lives in the session.
    by_client_id: HashTable<SessionIdx>,
    hasher: foldhash::fast::FixedState,
    /// This shard's plain subscriptions, by filter.
    subs: TopicTree<LocalSubs>,
    shares: Slab<ShareGroup>,
    share_index: HashMap<ShareKey, ShareId>,
    /// What the other shards subscribe to, kept up to date from `board` before every routing.
    interest: TopicTree<Interest>,
    board: Arc<InterestBoard>,
    /// The board's count of changes posted to this shard when it last applied them.
    interest_applied: u64,
    interest_changes: Vec<InterestChange>,
    /// A full replica of the retained messages: every shard applies every retained publish.
    retained: retained::RetainedStore,
    /// SUBSCRIBEs in progress, by connection (the connection's input waits meanwhile).
    unfinished: HashMap<ConnId, Box<subscribe::Unfinished>>,
    /// Their turns, round robin (entries of connections that closed meanwhile are skipped).
    unfinished_order: VecDeque<ConnId>,
    /// CONNECTs waiting for their authentication, by connection.
    authenticating: HashMap<ConnId, Box<connect::PendingConnect>>,
    /// The last ticket given to an authentication request.
    next_ticket: u64,
    /// Acknowledgements waiting for other shards, per connection, and who waits on which token.
    acks: HashMap<ConnId, acks::AckQueue>,
    ack_tokens: HashMap<u64, ConnId>,
    next_ack_token: u64,
    timers: BinaryHeap<Reverse<Timer>>,
    /// Disconnected sessions with something to notify, and the rounds that take them.
    notices: crate::notification::Pending,
    /// Notifications delivered on other shards, by ack token, until those shards answer.
    notified_elsewhere: HashMap<u64, notify::Awaited>,
    /// Reused for each notification's JSON record.
    notify_text: String,
    outbox: Vec<(ShardId, ShardMsg)>,
    dirty: Vec<ConnId>,
    events: Vec<Event>,
    /// Set by CONNECT when another shard owns the client id: the connection and its CONNECT frame.
    pending_handoff: Option<(ConnId, ShardId, Bytes)>,
    scratch: route::Scratch,
    /// Counter for client ids the shard assigns.
    next_assigned_id: u64,
    next_generation: u32,
    next_message_id: u64,
    /// The start of [`Shard::clock_s`]: the first connection's time (the core reads no clock).
    epoch: Option<Instant>,
    journal: durability::Log,
    durability: durability::Durability,
    pub stats: Stats,
}

/// Client ids are spread over shards by this hash; every shard computes the same owner.
const OWNER_SEED: u64 = 0x1b0d_5eed_cafe_f00d;

/// The shard of `shard_count` that owns sessions of `client_id`, as [`Shard::owner_of`] says:
/// for the server, which places recovered sessions before the shards run.
pub fn owner_of(client_id: &str, shard_count: u16) -> ShardId {
    let hasher = foldhash::fast::FixedState::with_seed(OWNER_SEED);
    (hasher.hash_one(client_id) % u64::from(shard_count)) as ShardId
}

impl Shard {
    /// Shard `id` of the broker whose shards share `board` (one inbox per shard).
    pub fn new(id: ShardId, board: Arc<InterestBoard>, settings: Arc<Settings>) -> Shard {
        let shard_count = board.shards();
        assert!(id < shard_count, "shard id out of range");
        assert!(
            !settings.endpoints.is_empty(),
            "a broker has at least one endpoint"
        );
        Shard {
            id,
            shard_count,
            settings,
            conns: Slab::new(),
            sessions: Slab::new(),
            by_client_id: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(OWNER_SEED),
            subs: TopicTree::new(),
            shares: Slab::new(),
            share_index: HashMap::new(),
            interest: TopicTree::new(),
            board,
            interest_applied: 0,
            interest_changes: Vec::new(),
            retained: retained::RetainedStore::default(),
            unfinished: HashMap::new(),
            unfinished_order: VecDeque::new(),
            authenticating: HashMap::new(),
            next_ticket: 0,
            acks: HashMap::new(),
            ack_tokens: HashMap::new(),
            next_ack_token: 0,
            timers: BinaryHeap::new(),
            notices: crate::notification::Pending::default(),
            notified_elsewhere: HashMap::new(),
            notify_text: String::new(),
            outbox: Vec::new(),
            dirty: Vec::new(),
            events: Vec::new(),
            pending_handoff: None,
            scratch: route::Scratch::default(),
            next_assigned_id: 0,
            next_generation: 0,
            next_message_id: 0,
            epoch: None,
            journal: durability::Log::new(Box::new(MemoryOnly)),
            durability: durability::Durability::default(),
            stats: Stats::default(),
        }
    }

    /// Replaces the journal (the default keeps state in memory only), before any record.
    pub fn set_journal(&mut self, journal: Box<dyn Journal>) {
        assert_eq!(self.journal.appended, 0, "the journal is chosen at start");
        self.journal = durability::Log::new(journal);
    }

    /// The shard that owns sessions of `client_id`.
    pub fn owner_of(&self, client_id: &str) -> ShardId {
        (self.hasher.hash_one(client_id) % u64::from(self.shard_count)) as ShardId
    }

    fn endpoint(&self, conn: ConnId) -> &EndpointSettings {
        &self.settings.endpoints[usize::from(self.conns[conn as usize].endpoint)]
    }

    /// The largest packet `conn` may send now: until its CONNECT is accepted the peer is
    /// nobody and may declare only `connect_packet_size_max`, then `packet_size_max`.
    fn packet_size_limit(&self, conn: ConnId) -> u32 {
        let endpoint = self.endpoint(conn);
        match self.conns[conn as usize].state {
            ConnState::AwaitingConnect => endpoint
                .connect_packet_size_max
                .min(endpoint.packet_size_max),
            _ => endpoint.packet_size_max,
        }
    }

    /// Seconds since the shard's first connection: a clock in 4 bytes for what connections
    /// remember only to show it (136 years before it wraps).
    fn clock_s(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_secs() as u32
    }

    /// The `Instant` of a [`Shard::clock_s`] reading.
    fn clock_instant(&self, clock_s: u32) -> Option<Instant> {
        self.epoch
            .map(|e| e + std::time::Duration::from_secs(u64::from(clock_s)))
    }

    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    // ----- the server's side of the interface -----

    /// A new network connection on `endpoint`. Returns its id and generation.
    pub fn open(&mut self, now: Instant, endpoint: u16, peer: SocketAddr) -> (ConnId, u32) {
        self.stats.endpoint(endpoint).accepted += 1;
        self.open_conn(now, endpoint, peer)
    }

    /// Enters a connection, accepted here or adopted from another shard.
    fn open_conn(&mut self, now: Instant, endpoint: u16, peer: SocketAddr) -> (ConnId, u32) {
        assert!(
            usize::from(endpoint) < self.settings.endpoints.len(),
            "unknown endpoint"
        );
        let generation = self.generation();
        let opened_at_s = self.clock_s(now);
        let id = self.conns.insert(Connection::new(
            now,
            opened_at_s,
            endpoint,
            peer,
            generation,
        )) as ConnId;
        self.stats.connections_opened += 1;
        self.stats.endpoint(endpoint).active += 1;
        (id, generation)
    }

    /// What the transport established about `conn`'s peer (a PROXY header's address, TLS and
    /// its client certificate). Called before the transport passes on any MQTT byte.
    pub fn identify(&mut self, conn: ConnId, identity: Identity) {
        if let Some(c) = self.conns.get_mut(conn as usize) {
            c.peer = identity.peer.into();
            c.secure = identity.secure;
            c.certificate = identity.certificate;
        }
    }

    /// The peer address `conn` was opened with (or identified by).
    pub fn peer(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(conn as usize).map(|c| c.peer.into())
    }

    /// A connection handed over by another shard ([`Event::Handoff`]): opened here with what
    /// that shard knew, and its CONNECT and later bytes processed. Returns its id and generation.
    pub fn adopt(&mut self, now: Instant, handoff: &Handoff) -> (ConnId, u32) {
        let (conn, generation) = self.open_conn(now, handoff.endpoint, handoff.identity.peer);
        self.identify(conn, handoff.identity.clone());
        self.input(conn, now, &handoff.connect);
        self.input(conn, now, &handoff.rest);
        (conn, generation)
    }

    /// Whether `conn` still exists with this generation.
    pub fn is_current(&self, conn: ConnId, generation: u32) -> bool {
        self.conns
            .get(conn as usize)
            .is_some_and(|c| c.generation == generation)
    }

    /// Whether the server should read more from the socket: not while a SUBSCRIBE of the
    /// connection is in progress (its input stays in the socket, which is the back-pressure) or
    /// it is closing.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn as usize)
            .is_some_and(|c| c.is_open() && !c.paused)
    }

    /// Whether `conn`'s output has reached MaxSendBufferSize: no more deliveries are added, and
    /// a server whose socket to the peer is full should stop reading its requests too, since
    /// each request adds an answer.
    pub fn output_full(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn as usize)
            .is_some_and(|c| c.out.pending() >= self.settings.broker.send_buffer_max)
    }

    /// Whether the peer of a connection the core ended may still be sending: it did not end
    /// the connection itself with DISCONNECT. Closing such a socket would answer its next bytes
    /// with a reset, which destroys what it has not read yet (the DISCONNECT telling it why), so
    /// the server lets it linger and discards its input instead.
    pub fn peer_may_still_send(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn as usize)
            .is_some_and(|c| !c.peer_disconnected)
    }

    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn as usize)
            .is_none_or(|c| c.state == ConnState::Closing)
    }

    /// The bytes waiting for `conn`'s socket. Those that wait for the journal
    /// (`shard/durability.rs`) are not among what it lets be written: the shard lists the
    /// connection dirty when they may go.
    pub fn output(&mut self, conn: ConnId) -> Option<&mut OutBuf> {
        self.conns.get_mut(conn as usize).map(|c| &mut c.out)
    }

    /// The server wrote some of `conn`'s output: room in the send buffer lets queued messages go.
    /// (The buffer's memory is kept while the connection is busy; parking gives it back.)
    pub fn written(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get(conn as usize) else {
            return;
        };
        if c.state != ConnState::Connected {
            return;
        }
        if let Some(session) = c.session {
            self.pump(session, now);
        }
    }

    /// The peer closed the socket, or it failed.
    pub fn lost(&mut self, conn: ConnId, now: Instant) {
        if self.conns.get(conn as usize).is_some_and(|c| c.is_open()) {
            self.close(conn, now, lifecycle::CloseKind::Abrupt);
        }
    }

    /// The server closed the socket of a `Closing` connection (or of a lost one): forget it.
    pub fn release(&mut self, conn: ConnId, now: Instant) {
        if self.conns.get(conn as usize).is_some_and(|c| c.is_open()) {
            self.close(conn, now, lifecycle::CloseKind::Abrupt);
        }
        if let Some(c) = self.conns.try_remove(conn as usize) {
            self.stats.connections_closed += 1;
            let endpoint = self.stats.endpoint(c.endpoint);
            endpoint.active -= 1;
            if !c.was_connected {
                endpoint.bad += 1;
            }
        }
    }

    /// Connections with new output (or newly closing) since the last call.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        for &conn in &self.dirty {
            if let Some(c) = self.conns.get_mut(conn as usize) {
                c.dirty = false;
            }
        }
        into.append(&mut self.dirty);
    }

    /// The connection goes idle (the server parks its socket): its buffers are given back.
    pub fn release_buffers(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn as usize) {
            c.out.release();
        }
    }

    /// When `conn` last received a whole packet (idle connections get parked by the server).
    pub fn last_packet_at(&self, conn: ConnId) -> Option<Instant> {
        self.conns.get(conn as usize).map(|c| c.last_packet_at)
    }

    /// Whether `conn` has bytes waiting to be written, or waiting for the journal before they
    /// may be: a closing connection is not closed, nor an idle one parked, before they went.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn as usize)
            .is_some_and(|c| c.out.pending() > 0 || c.out.is_held())
    }

    pub fn take_outbox(&mut self, into: &mut Vec<(ShardId, ShardMsg)>) {
        into.append(&mut self.outbox);
    }

    pub fn take_events(&mut self, into: &mut Vec<Event>) {
        into.append(&mut self.events);
    }

    /// The settings the shard runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    // ----- helpers shared by the handlers -----

    /// Lists `conn` for the flusher; not while all its output waits for the journal (the
    /// journal's report lists it when some may go).
    fn mark_dirty(&mut self, conn: ConnId) {
        let c = &mut self.conns[conn as usize];
        let all_waiting = c.out.is_held() && c.out.is_empty();
        if !c.dirty && !all_waiting {
            c.dirty = true;
            self.dirty.push(conn);
        }
    }

    /// Encodes a control packet for `conn` within the client's Maximum Packet Size
    /// ([MQTT-3.1.2-24]): one that would exceed it goes without its Reason String and User
    /// Properties, which the specification lets every packet that carries them drop. Returns
    /// false, having sent nothing, when even that is too large.
    fn try_send(&mut self, conn: ConnId, packet: &Packet) -> bool {
        let c = &mut self.conns[conn as usize];
        let max = c.client.packet_size_max as usize;
        if packet.encoded_len(c.protocol) <= max {
            packet.encode(c.protocol, c.out.tail());
        } else {
            let mut bare = packet.clone();
            bare.strip_reason_properties();
            if bare.encoded_len(c.protocol) > max {
                tracing::debug!(
                    conn,
                    packet = packet.name(),
                    max,
                    "packet over the client's Maximum Packet Size not sent"
                );
                return false;
            }
            bare.encode(c.protocol, c.out.tail());
        }
        self.mark_dirty(conn);
        true
    }

    /// Encodes a control packet whose size is fixed: at most `connect::CONTROL_PACKET_MAX`
    /// bytes once Reason Strings and User Properties are dropped, which every accepted client
    /// accepts, or a CONNACK the client's limit was checked against.
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        let sent = self.try_send(conn, packet);
        assert!(
            sent,
            "a fixed-size control packet fits every accepted client"
        );
    }

    /// Encodes an acknowledgement that grows with the request (a SUBACK or UNSUBACK holds a
    /// code per filter). One the client's Maximum Packet Size cannot hold cannot be sent
    /// ([MQTT-3.1.2-24]) and the request cannot go unanswered ([MQTT-3.8.4-1],
    /// [MQTT-3.10.4-4]): the connection ends with Packet too large.
    fn send_or_fail(&mut self, conn: ConnId, now: Instant, packet: &Packet) {
        if !self.try_send(conn, packet) {
            self.fail(conn, now, ReasonCode::PacketTooLarge);
        }
    }

    /// Ends the connection for a reason that is not a violation of the protocol (a limit, a
    /// policy, keep alive): v5 clients are told why ([MQTT-4.13.1-1]).
    fn fail(&mut self, conn: ConnId, now: Instant, reason: ReasonCode) {
        self.stats.protocol_errors += 1;
        self.disconnect(conn, now, reason);
    }

    /// Ends the connection of a client that broke the protocol. A v5 client is told the reason
    /// code ([MQTT-4.13.1-1]) and, when it asked for problem information, the rule it broke as
    /// the Reason String (which DISCONNECT may carry either way, [MQTT-3.1.2-29]).
    fn violated(&mut self, conn: ConnId, now: Instant, violation: Violation) {
        tracing::debug!(conn, %violation, "protocol violation");
        if self.conns[conn as usize].state == ConnState::AwaitingConnect {
            self.refused(conn, None, RefusedFor::Protocol(violation));
        }
        self.stats.protocol_errors += 1;
        let explain = self.conns[conn as usize].problem_info;
        let reason_string = explain.then(|| violation.to_string().into());
        self.end(conn, now, violation.reason_code(), reason_string);
    }

    /// The server ends `conn` for `reason` (a revoked certificate, an administrator): a v5
    /// client is told why with a DISCONNECT, the will stands, the server closes the socket once
    /// the last bytes are out.
    pub fn disconnect(&mut self, conn: ConnId, now: Instant, reason: ReasonCode) {
        self.end(conn, now, reason, None);
    }

    /// Closes `conn` for `reason`; a connected v5 client first gets a DISCONNECT with the
    /// reason code and, as its Reason String, `why` (left out if it does not fit).
    fn end(&mut self, conn: ConnId, now: Instant, reason: ReasonCode, why: Option<ByteString>) {
        let Some(c) = self.conns.get(conn as usize) else {
            return;
        };
        tracing::debug!(conn, peer = %c.peer, ?reason, "closing connection");
        if c.is_v5() && c.state == ConnState::Connected {
            let disconnect = Disconnect {
                reason_code: reason,
                properties: DisconnectProperties {
                    reason_string: why,
                    ..DisconnectProperties::default()
                },
            };
            self.send(conn, &Packet::Disconnect(disconnect));
        }
        self.close(conn, now, lifecycle::CloseKind::ServerInitiated);
    }

    /// Tells the server that `conn` was refused before it was accepted, for its log.
    fn refused(&mut self, conn: ConnId, client_id: Option<&str>, why: RefusedFor) {
        let peer = self.conns[conn as usize].peer.into();
        self.events.push(Event::Refused {
            peer,
            client_id: client_id.map(Into::into),
            why,
        });
    }

    fn next_message_id(&mut self) -> u64 {
        self.next_message_id += 1;
        message_id(self.id, self.next_message_id)
    }

    /// Whether the session outlives its connection, so the journal keeps it.
    fn persistent(&self, session: SessionIdx) -> bool {
        self.sessions[session as usize].expiry_s > 0
    }

    /// Tells the journal about a durable session's state (its expiry and will).
    fn journal_session(&mut self, session: SessionIdx) {
        if !self.persistent(session) {
            return;
        }
        let s = &self.sessions[session as usize];
        self.journal.record(Record::Session {
            client_id: &s.client_id,
            expiry_s: s.expiry_s,
            user_id: s.principal.as_ref().map(|p| &*p.user_id),
            connected: s.conn.is_some(),
            expires_at: s.expires_at,
            queue_max: s.queue_max,
            queue_behavior: s.queue_behavior,
        });
        self.journal.record(Record::Will {
            client_id: &s.client_id,
            will: s.will.as_deref(),
        });
    }

    /// Tells the journal that a durable session no longer holds message `id`.
    fn journal_released(&mut self, session: SessionIdx, id: u64) {
        if self.persistent(session) {
            let client_id = &self.sessions[session as usize].client_id;
            self.journal.record(Record::Released { client_id, id });
        }
    }

    /// Tells the journal about a packet id of a durable session: `make` builds the record
    /// from the client id.
    fn journal_packet_id(&mut self, session: SessionIdx, make: impl FnOnce(&str) -> Record<'_>) {
        if self.persistent(session) {
            let client_id = &self.sessions[session as usize].client_id;
            self.journal.record(make(client_id));
        }
    }

    fn queue_remote(&mut self, to: ShardId, msg: ShardMsg) {
        debug_assert_ne!(to, self.id, "a shard does not message itself");
        self.outbox.push((to, msg));
    }

    fn other_shards(&self) -> impl Iterator<Item = ShardId> + use<> {
        let me = self.id;
        (0..self.shard_count).filter(move |&s| s != me)
    }
}
