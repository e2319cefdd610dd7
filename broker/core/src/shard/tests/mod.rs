//! The shard state machine driven without sockets or sleeping: clients are byte streams, time is
//! an `Instant` the test moves, and several shards exchange their messages by hand. Each test
//! runs its behaviour on one shard and on several where routing crosses shards.
//!
//! This file is the harness (`Broker`, `Client` and the packets tests build); the tests are
//! in one file per subject: `connection`, `session`, `wills`, `publish` (QoS flows and their
//! acknowledgements), `queue` (session queue limits), `subscribe`, `shared`, `retained`, `v5`,
//! `authentication` (CONNECTs waiting for a verdict), `policy`, `journal`, `durability`
//! (output held until the journal's records are on disk), `restore` (a restart from the
//! journal's records, onto as many shards or others), `publish_after_subscribe` (across shards), `bounded` (work and memory
//! per packet), `exact_answers` (where the specification gives one), `reconfigure` (a
//! configuration changed under connected clients) and `notification` (disconnected-client
//! notification).

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironsight_codec::{
    parse_fixed_header, ByteString, Bytes, BytesMut, ConnAck, Connect, ConnectProperties,
    Disconnect, DisconnectProperties, MessageProperties, Packet, ProtocolVersion, PubResponse,
    Publish, PublishProperties, QoS, ReasonCode, ReasonProperties, RetainHandling, SubAck,
    Subscribe, SubscribeFilter, SubscribeProperties, SubscriptionOptions, Unsubscribe, Will,
};

use super::{Event, Reconfigured, RefusedFor, Shard};
use crate::auth::{AuthRequest, Principal, Refusal};
use crate::conn::ConnId;
use crate::interest::InterestBoard;
use crate::queue::QueueBehavior;
use crate::routing::ShardMsg;
use crate::settings::{EndpointSettings, Settings};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// The demo endpoint's settings: anyone may connect, publish and subscribe anywhere.
fn demo_settings() -> Settings {
    Settings {
        endpoints: vec![EndpointSettings::default()],
        ..Settings::default()
    }
}

/// A broker of `n` shards with a test clock.
struct Broker {
    shards: Vec<Shard>,
    now: Instant,
    /// Authentication requests the shards made, for the test to answer (`Broker::answer`).
    auth_requests: Vec<AuthRequest>,
    /// When set, requests are answered at once: the user the CONNECT names, if listed here,
    /// else bad credentials.
    users: Vec<Arc<Principal>>,
    /// Connections the shards refused before accepting them: client id (when known) and why.
    refusals: Vec<(Option<Box<str>>, RefusedFor)>,
}

/// A client: where its connection lives now, and what it received but the test did not read.
struct Client {
    shard: usize,
    conn: ConnId,
    version: ProtocolVersion,
    inbox: Vec<Packet>,
    closed: bool,
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: RetainHandling::SendAtSubscribe,
    }
}

fn connect(id: &str, version: ProtocolVersion, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive_s: 0,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

fn publish(topic: &str, payload: &[u8], qos: QoS, id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: id.map(pid),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

fn subscribe(id: u16, filters: &[(&str, SubscriptionOptions)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        filters: filters
            .iter()
            .map(|(f, o)| SubscribeFilter {
                filter: (*f).into(),
                options: *o,
            })
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

fn ack(id: u16, reason: ReasonCode) -> PubResponse {
    PubResponse {
        packet_id: pid(id),
        reason_code: reason,
        properties: ReasonProperties::default(),
    }
}

impl Broker {
    fn new(n: u16) -> Broker {
        Broker::with(n, demo_settings())
    }

    fn with(n: u16, settings: Settings) -> Broker {
        let settings = Arc::new(settings);
        let board = InterestBoard::new(n);
        Broker {
            shards: (0..n)
                .map(|id| Shard::new(id, board.clone(), settings.clone()))
                .collect(),
            now: Instant::now(),
            auth_requests: Vec::new(),
            users: Vec::new(),
            refusals: Vec::new(),
        }
    }

    fn advance(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
        for shard in &mut self.shards {
            shard.tick(self.now);
        }
        self.settle(&mut []);
    }

    /// Every shard takes up `settings`, as the server hands them a new configuration; returns
    /// what they did together, once their output is collected into `clients`.
    fn reconfigure(&mut self, settings: Settings, clients: &mut [&mut Client]) -> Reconfigured {
        let settings = Arc::new(settings);
        let mut total = Reconfigured::default();
        for shard in &mut self.shards {
            let done = shard.reconfigure(self.now, settings.clone());
            total.checked += done.checked;
            total.revoked += done.revoked;
            total.subscriptions_removed += done.subscriptions_removed;
            total.messages_dropped += done.messages_dropped;
            total.closed += done.closed;
        }
        self.settle(clients);
        total
    }

    /// Opens a connection on shard `on` that has sent nothing yet.
    fn open_on(&mut self, on: usize, version: ProtocolVersion) -> Client {
        self.open_at(on, 0, version)
    }

    /// Opens a connection on shard `on`, accepted on endpoint number `endpoint`.
    fn open_at(&mut self, on: usize, endpoint: u16, version: ProtocolVersion) -> Client {
        let (conn, _) = self.shards[on].open(self.now, endpoint, peer());
        Client {
            shard: on,
            conn,
            version,
            inbox: Vec::new(),
            closed: false,
        }
    }

    /// Opens a connection on shard `on` and sends CONNECT; returns the client and its CONNACK.
    fn connect_on(&mut self, on: usize, c: Connect) -> (Client, ConnAck) {
        self.connect_at(on, 0, c)
    }

    /// Connects on shard `on` through endpoint number `endpoint`.
    fn connect_at(&mut self, on: usize, endpoint: u16, c: Connect) -> (Client, ConnAck) {
        let mut client = self.open_at(on, endpoint, c.protocol);
        self.send(&mut client, Packet::Connect(Box::new(c)));
        match client.inbox.remove(0) {
            Packet::ConnAck(connack) => (client, connack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn connect(&mut self, c: Connect) -> (Client, ConnAck) {
        self.connect_on(0, c)
    }

    fn send(&mut self, client: &mut Client, packet: Packet) {
        let mut bytes = BytesMut::new();
        packet.encode(client.version, &mut bytes);
        self.send_bytes(client, &bytes);
    }

    fn send_bytes(&mut self, client: &mut Client, bytes: &[u8]) {
        self.shards[client.shard].input(client.conn, self.now, bytes);
        self.settle(&mut [&mut *client]);
    }

    /// Runs shard-to-shard messages, handoffs, the clients' SUBSCRIBEs in progress and the
    /// notification rounds until nothing moves, then collects output. A round's pace moves the
    /// clock on, as the server waits for it.
    fn settle(&mut self, clients: &mut [&mut Client]) {
        loop {
            let mut moved = false;
            for shard in &mut self.shards {
                while let Some(at) = shard.next_work(self.now) {
                    self.now = self.now.max(at);
                    shard.work(self.now, &mut Vec::new());
                    moved = true;
                }
            }
            for from in 0..self.shards.len() {
                let mut events = Vec::new();
                self.shards[from].take_events(&mut events);
                for event in events {
                    let (conn, to, handoff) = match event {
                        Event::Handoff { conn, to, handoff } => (conn, to, handoff),
                        Event::Refused { client_id, why, .. } => {
                            self.refusals.push((client_id, why));
                            continue;
                        }
                        Event::Authenticate(request) if self.users.is_empty() => {
                            self.auth_requests.push(*request);
                            continue;
                        }
                        Event::Authenticate(request) => {
                            let named = request.user_name.as_deref();
                            let verdict = self
                                .users
                                .iter()
                                .find(|p| Some(&*p.user_id) == named)
                                .cloned()
                                .ok_or(Refusal::BadCredentials);
                            self.shards[from].authenticated(
                                request.conn,
                                request.ticket,
                                self.now,
                                verdict.into(),
                                &mut Vec::new(),
                            );
                            moved = true;
                            continue;
                        }
                    };
                    let (new_conn, _) = self.shards[to as usize].adopt(self.now, &handoff);
                    for c in clients
                        .iter_mut()
                        .filter(|c| c.shard == from && c.conn == conn)
                    {
                        c.shard = to as usize;
                        c.conn = new_conn;
                    }
                    moved = true;
                }
                let mut outbox = Vec::new();
                self.shards[from].take_outbox(&mut outbox);
                for (to, msg) in outbox {
                    self.shards[to as usize].remote(self.now, msg);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        for client in clients.iter_mut() {
            self.collect(client);
        }
    }

    /// Moves a client's output into its inbox, as a socket would, and acknowledges the write.
    fn collect(&mut self, client: &mut Client) {
        let shard = &mut self.shards[client.shard];
        let Some(out) = shard.output(client.conn) else {
            return;
        };
        let mut bytes = Vec::new();
        let mut slices = [std::io::IoSlice::new(&[]); 64];
        let n = out.io_slices(&mut slices);
        for s in &slices[..n] {
            bytes.extend_from_slice(s);
        }
        out.advance(bytes.len());
        let mut at = 0;
        while let Some(header) = parse_fixed_header(&bytes[at..], u32::MAX).unwrap() {
            let frame = Bytes::copy_from_slice(&bytes[at..at + header.frame_len()]);
            client
                .inbox
                .push(Packet::decode(frame, client.version).unwrap());
            at += header.frame_len();
        }
        // Output that waits for the journal keeps a closing connection, as in the server.
        if shard.is_closing(client.conn) && !shard.has_output(client.conn) {
            shard.release(client.conn, self.now);
            client.closed = true;
        } else {
            shard.written(client.conn, self.now);
        }
    }

    /// Everything a client received since the last call, after letting the broker settle.
    fn received(&mut self, client: &mut Client) -> Vec<Packet> {
        self.settle(&mut [&mut *client]);
        std::mem::take(&mut client.inbox)
    }

    fn publishes(&mut self, client: &mut Client) -> Vec<Publish> {
        self.received(client)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The socket of `client` closes without DISCONNECT.
    fn drop_connection(&mut self, client: &mut Client) {
        self.shards[client.shard].lost(client.conn, self.now);
        self.shards[client.shard].release(client.conn, self.now);
        client.closed = true;
        self.settle(&mut []);
    }

    fn disconnect(&mut self, client: &mut Client, reason: ReasonCode, expiry: Option<u32>) {
        let properties = DisconnectProperties {
            session_expiry_interval_s: expiry,
            ..Default::default()
        };
        self.send(
            client,
            Packet::Disconnect(Disconnect {
                reason_code: reason,
                properties,
            }),
        );
        self.collect(client);
    }

    /// Subscribes and returns the SUBACK codes.
    fn subscribe(
        &mut self,
        client: &mut Client,
        filters: &[(&str, SubscriptionOptions)],
    ) -> Vec<ReasonCode> {
        self.send(client, subscribe(1, filters));
        let packets = std::mem::take(&mut client.inbox);
        let (acks, rest): (Vec<_>, Vec<_>) = packets
            .into_iter()
            .partition(|p| matches!(p, Packet::SubAck(_)));
        client.inbox = rest;
        match acks.as_slice() {
            [Packet::SubAck(SubAck { reason_codes, .. })] => reason_codes.clone(),
            other => panic!("expected one SUBACK, got {other:?}"),
        }
    }
}

fn payloads(publishes: &[Publish]) -> Vec<&[u8]> {
    publishes.iter().map(|p| &p.payload[..]).collect()
}

/// A client id that the `n`-shard broker assigns to shard `shard`.
fn id_on(broker: &Broker, shard: u16, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| broker.shards[0].owner_of(id) == shard)
        .unwrap()
}

/// A v5 CONNECT with a QoS 1 will on `will` ("bye"), its delay and the session's expiry.
fn will_connect(id: &str, delay: Option<u32>, expiry: u32) -> Connect {
    let mut c = connect(id, V5, expiry == 0);
    c.properties.session_expiry_interval_s = Some(expiry);
    c.will = Some(Will {
        topic: "will".into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        delay_interval_s: delay,
        properties: MessageProperties::default(),
    });
    c
}

/// A client subscribed to the wills.
fn watcher(b: &mut Broker) -> Client {
    let (mut w, _) = b.connect(connect("watcher", V5, true));
    b.subscribe(&mut w, &[("will", opts(QoS::AtLeastOnce))]);
    w
}

mod authentication;
mod bounded;
mod connection;
mod durability;
mod exact_answers;
mod inspect;
mod journal;
mod notification;
mod policy;
mod publish;
mod publish_after_subscribe;
mod queue;
mod reconfigure;
mod restore;
mod retained;
mod session;
mod shared;
mod subscribe;
mod v5;
mod wills;
