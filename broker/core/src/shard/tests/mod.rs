//! The shard state machine driven without sockets or sleeping: clients are byte streams, time is
//! an `Instant` the test moves, and several shards exchange their messages by hand. Each test
//! runs its behaviour on one shard and on several where routing crosses shards.

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

use super::{Event, Shard};
use crate::conn::ConnId;
use crate::interest::InterestBoard;
use crate::policy::{IdFilter, TopicPattern};
use crate::queue::QueueBehavior;
use crate::routing::ShardMsg;
use crate::settings::{EndpointSettings, Settings};

mod exact_answers;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A broker of `n` shards with a test clock.
struct Broker {
    shards: Vec<Shard>,
    now: Instant,
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
        Broker::with(
            n,
            Settings {
                endpoints: vec![EndpointSettings::default()],
                ..Settings::default()
            },
        )
    }

    fn with(n: u16, settings: Settings) -> Broker {
        let settings = Arc::new(settings);
        let board = InterestBoard::new(n);
        Broker {
            shards: (0..n)
                .map(|id| Shard::new(id, board.clone(), settings.clone()))
                .collect(),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
        for shard in &mut self.shards {
            shard.tick(self.now);
        }
        self.settle(&mut []);
    }

    /// Opens a connection on shard `on` and sends CONNECT; returns the client and its CONNACK.
    fn connect_on(&mut self, on: usize, c: Connect) -> (Client, ConnAck) {
        let version = c.protocol;
        let (conn, _) = self.shards[on].open(self.now, 0, peer());
        let mut client = Client {
            shard: on,
            conn,
            version,
            inbox: Vec::new(),
            closed: false,
        };
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

    /// Runs shard-to-shard messages, handoffs and the clients' SUBSCRIBEs in progress until
    /// nothing moves, then collects output.
    fn settle(&mut self, clients: &mut [&mut Client]) {
        loop {
            let mut moved = false;
            for shard in &mut self.shards {
                while shard.has_work() {
                    shard.work(self.now, &mut Vec::new());
                    moved = true;
                }
            }
            for from in 0..self.shards.len() {
                let mut events = Vec::new();
                self.shards[from].take_events(&mut events);
                for Event::Handoff { conn, to, handoff } in events {
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
        if shard.is_closing(client.conn) {
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

// ----- connection -----

#[test]
fn v5_connack_advertises_the_limits() {
    let mut b = Broker::new(1);
    let (_, connack) = b.connect(connect("c", V5, true));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(!connack.session_present);
    let p = connack.properties;
    assert_eq!(p.receive_maximum, NonZeroU16::new(128));
    assert_eq!(p.topic_alias_maximum, Some(16));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(4096 * 1024));
    assert_eq!(p.assigned_client_identifier, None);
}

#[test]
fn empty_client_ids_follow_the_protocol_rules() {
    let mut b = Broker::new(2);
    let (_, a) = b.connect(connect("", V5, true));
    let (_, c) = b.connect(connect("", V5, true));
    let (a, c) = (
        a.properties.assigned_client_identifier.unwrap(),
        c.properties.assigned_client_identifier.unwrap(),
    );
    assert!(!a.is_empty());
    assert_ne!(a, c, "assigned ids are unique");
    let (_, v311_clean) = b.connect(connect("", V311, true));
    assert_eq!(v311_clean.reason_code, ReasonCode::Success);
    let (client, v311_durable) = b.connect(connect("", V311, false));
    assert_eq!(
        v311_durable.reason_code,
        ReasonCode::ClientIdentifierNotValid,
        "[MQTT-3.1.3-8]"
    );
    assert!(client.closed);
}

#[test]
fn connections_move_to_the_shard_owning_their_client_id() {
    let mut b = Broker::new(4);
    let id = id_on(&b, 3, "dev");
    let (client, connack) = b.connect_on(0, connect(&id, V5, true));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(client.shard, 3);
    assert_eq!(b.shards[0].connection_count(), 0);
    assert_eq!(b.shards[3].session_count(), 1);
}

#[test]
fn bytes_after_connect_move_with_the_connection() {
    let mut b = Broker::new(2);
    let id = id_on(&b, 1, "x");
    let (conn, _) = b.shards[0].open(b.now, 0, peer());
    let mut client = Client {
        shard: 0,
        conn,
        version: V5,
        inbox: Vec::new(),
        closed: false,
    };
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(connect(&id, V5, true))).encode(V5, &mut bytes);
    subscribe(7, &[("t", opts(QoS::AtMostOnce))]).encode(V5, &mut bytes);
    b.send_bytes(&mut client, &bytes);
    let packets = b.received(&mut client);
    assert!(matches!(packets[0], Packet::ConnAck(_)));
    assert!(matches!(&packets[1], Packet::SubAck(s) if s.packet_id == pid(7)));
}

#[test]
fn first_packet_must_be_connect() {
    let mut b = Broker::new(1);
    let (conn, _) = b.shards[0].open(b.now, 0, peer());
    let mut client = Client {
        shard: 0,
        conn,
        version: V311,
        inbox: Vec::new(),
        closed: false,
    };
    b.send(&mut client, Packet::PingReq);
    assert!(client.closed, "[MQTT-3.1.0-1] closed");
    assert!(client.inbox.is_empty(), "nothing is sent back");
}

#[test]
fn unknown_protocol_level_gets_the_v311_refusal() {
    let mut b = Broker::new(1);
    let (conn, _) = b.shards[0].open(b.now, 0, peer());
    let mut client = Client {
        shard: 0,
        conn,
        version: V311,
        inbox: Vec::new(),
        closed: false,
    };
    // CONNECT, remaining length 13: "MQTT", level 6, flags clean, keep alive 60, client id "a"
    let bytes = [
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60, 0, 1, b'a',
    ];
    b.send_bytes(&mut client, &bytes);
    let packets = std::mem::take(&mut client.inbox);
    assert!(
        matches!(&packets[..], [Packet::ConnAck(c)] if c.reason_code == ReasonCode::UnsupportedProtocolVersion)
    );
    assert!(client.closed);
}

#[test]
fn malformed_packet_closes_only_that_client() {
    let mut b = Broker::new(1);
    let (mut bad, _) = b.connect(connect("bad", V5, true));
    let (mut good, _) = b.connect(connect("good", V5, true));
    b.subscribe(&mut good, &[("t", opts(QoS::AtMostOnce))]);
    // PUBLISH with QoS 3 in the fixed header flags: malformed.
    b.send_bytes(&mut bad, &[0x36, 3, 0, 1, b't']);
    let packets = b.received(&mut bad);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::MalformedPacket)
    );
    assert!(bad.closed);
    let (mut other, _) = b.connect(connect("other", V5, true));
    b.send(
        &mut other,
        Packet::Publish(publish("t", b"still here", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut good)), [b"still here"]);
}

#[test]
fn oversize_packet_is_refused_from_the_header() {
    let mut settings = Settings {
        endpoints: vec![EndpointSettings::default()],
        ..Settings::default()
    };
    settings.endpoints[0].packet_size_max = 1024;
    let mut b = Broker::with(1, settings);
    let (mut c, _) = b.connect(connect("c", V5, true));
    // PUBLISH declaring 250 MB: only the fixed header arrives.
    b.send_bytes(&mut c, &[0x30, 0x80, 0xE5, 0xC1, 0x77]);
    let packets = b.received(&mut c);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PacketTooLarge)
    );
    assert!(c.closed);
}

// ----- QoS flows -----

#[test]
fn qos_is_the_minimum_of_publish_and_subscription() {
    for shards in [1, 3] {
        let mut b = Broker::new(shards);
        let (mut sub, _) = b.connect(connect(&id_on(&b, 0, "s"), V5, true));
        let (mut publisher, _) = b.connect(connect(&id_on(&b, shards - 1, "p"), V5, true));
        b.subscribe(&mut sub, &[("q/+", opts(QoS::AtLeastOnce))]);
        b.send(
            &mut publisher,
            Packet::Publish(publish("q/2", b"two", QoS::ExactlyOnce, Some(1))),
        );
        b.send(
            &mut publisher,
            Packet::Publish(publish("q/0", b"zero", QoS::AtMostOnce, None)),
        );
        let got = b.publishes(&mut sub);
        assert_eq!(payloads(&got), [&b"two"[..], b"zero"], "shards {shards}");
        assert_eq!(got[0].qos, QoS::AtLeastOnce);
        assert_eq!(got[1].qos, QoS::AtMostOnce);
        let acks = b.received(&mut publisher);
        assert!(matches!(&acks[..], [Packet::PubRec(r)] if r.reason_code == ReasonCode::Success));
    }
}

#[test]
fn qos2_duplicate_publish_is_delivered_once() {
    let mut b = Broker::new(1);
    let (mut sub, _) = b.connect(connect("s", V311, true));
    let (mut p, _) = b.connect(connect("p", V311, true));
    b.subscribe(&mut sub, &[("t", opts(QoS::ExactlyOnce))]);
    let mut first = publish("t", b"once", QoS::ExactlyOnce, Some(9));
    b.send(&mut p, Packet::Publish(first.clone()));
    first.dup = true;
    b.send(&mut p, Packet::Publish(first));
    let acks = b.received(&mut p);
    assert_eq!(acks.len(), 2, "each PUBLISH gets a PUBREC");
    b.send(&mut p, Packet::PubRel(ack(9, ReasonCode::Success)));
    assert!(matches!(&b.received(&mut p)[..], [Packet::PubComp(c)] if c.packet_id == pid(9)));
    assert_eq!(b.publishes(&mut sub).len(), 1);
    b.send(&mut p, Packet::PubRel(ack(9, ReasonCode::Success)));
    assert!(
        matches!(&b.received(&mut p)[..], [Packet::PubComp(_)]),
        "an unknown PUBREL is still completed"
    );
}

#[test]
fn outbound_qos2_flow_completes() {
    let mut b = Broker::new(1);
    let (mut sub, _) = b.connect(connect("s", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut sub, &[("t", opts(QoS::ExactlyOnce))]);
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, Some(1))),
    );
    let got = b.publishes(&mut sub);
    let id = got[0].packet_id.unwrap().get();
    b.send(&mut sub, Packet::PubRec(ack(id, ReasonCode::Success)));
    assert!(matches!(&b.received(&mut sub)[..], [Packet::PubRel(r)] if r.packet_id.get() == id));
    b.send(&mut sub, Packet::PubComp(ack(id, ReasonCode::Success)));
    assert!(b.shards[0]
        .sessions
        .iter()
        .all(|(_, s)| s.delivery.as_ref().is_none_or(|d| d.inflight.is_empty())));
}

#[test]
fn receive_maximum_limits_unacknowledged_deliveries() {
    let mut b = Broker::new(1);
    let mut c = connect("s", V5, true);
    c.properties.receive_maximum = NonZeroU16::new(2);
    let (mut sub, _) = b.connect(c);
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut sub, &[("t", opts(QoS::AtLeastOnce))]);
    for (i, text) in [b"1", b"2", b"3", b"4"].iter().enumerate() {
        b.send(
            &mut p,
            Packet::Publish(publish("t", *text, QoS::AtLeastOnce, Some(i as u16 + 1))),
        );
    }
    let first = b.publishes(&mut sub);
    assert_eq!(payloads(&first), [b"1", b"2"]);
    b.send(
        &mut sub,
        Packet::PubAck(ack(first[0].packet_id.unwrap().get(), ReasonCode::Success)),
    );
    assert_eq!(
        payloads(&b.publishes(&mut sub)),
        [b"3"],
        "one ack frees one slot"
    );
}

#[test]
fn too_many_unreleased_qos2_publishes_disconnect() {
    let mut b = Broker::new(1);
    let (mut p, connack) = b.connect(connect("p", V5, true));
    let max = connack.properties.receive_maximum.unwrap().get();
    for id in 1..=max + 1 {
        b.send(
            &mut p,
            Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, Some(id))),
        );
    }
    let last = b.received(&mut p).pop().unwrap();
    assert!(
        matches!(last, Packet::Disconnect(d) if d.reason_code == ReasonCode::ReceiveMaximumExceeded)
    );
}

// ----- sessions -----

#[test]
fn persistent_session_redelivers_unacknowledged_messages_with_dup() {
    for shards in [1, 2] {
        let mut b = Broker::new(shards);
        let sid = id_on(&b, shards - 1, "s");
        let mut c = connect(&sid, V5, false);
        c.properties.session_expiry_interval_s = Some(60);
        let (mut sub, _) = b.connect(c.clone());
        let (mut p, _) = b.connect(connect(&id_on(&b, 0, "p"), V5, true));
        b.subscribe(&mut sub, &[("t", opts(QoS::AtLeastOnce))]);
        b.send(
            &mut p,
            Packet::Publish(publish("t", b"unacked", QoS::AtLeastOnce, Some(1))),
        );
        let first = b.publishes(&mut sub);
        assert!(!first[0].dup);
        b.drop_connection(&mut sub);
        b.send(
            &mut p,
            Packet::Publish(publish("t", b"while away", QoS::AtLeastOnce, Some(2))),
        );
        b.send(
            &mut p,
            Packet::Publish(publish("t", b"qos0 away", QoS::AtMostOnce, None)),
        );
        let (mut again, connack) = b.connect(c);
        assert!(connack.session_present);
        let got = b.publishes(&mut again);
        assert_eq!(
            payloads(&got),
            [&b"unacked"[..], b"while away"],
            "QoS 0 is not queued offline"
        );
        assert!(got[0].dup && got[0].packet_id == first[0].packet_id);
        assert!(!got[1].dup);
    }
}

#[test]
fn session_expiry_ends_the_session() {
    let mut b = Broker::new(1);
    let mut c = connect("s", V5, false);
    c.properties.session_expiry_interval_s = Some(10);
    let (mut sub, _) = b.connect(c.clone());
    b.subscribe(&mut sub, &[("t", opts(QoS::AtLeastOnce))]);
    b.drop_connection(&mut sub);
    b.advance(9.0);
    assert_eq!(b.shards[0].session_count(), 1);
    b.advance(1.5);
    assert_eq!(b.shards[0].session_count(), 0);
    let (_, connack) = b.connect(c);
    assert!(!connack.session_present);
}

#[test]
fn clean_start_discards_the_old_session() {
    let mut b = Broker::new(1);
    let (mut sub, _) = b.connect(connect("s", V311, false));
    b.subscribe(&mut sub, &[("t", opts(QoS::AtLeastOnce))]);
    b.drop_connection(&mut sub);
    let (_, resumed) = b.connect(connect("s", V311, false));
    assert!(resumed.session_present);
    let (_, clean) = b.connect(connect("s", V311, true));
    assert!(!clean.session_present);
}

/// Proves a client reconnecting in a loop with a long session expiry cannot grow the timer
/// heap: stale timers are pruned, and the live one still ends the session on time.
#[test]
fn reconnect_loop_keeps_session_timers_bounded() {
    let mut b = Broker::new(1);
    let mut c = connect("looping", V5, false);
    c.properties.session_expiry_interval_s = Some(1000);
    for _ in 0..3000 {
        let (mut s, _) = b.connect(c.clone());
        b.drop_connection(&mut s);
    }
    assert!(b.shards[0].timers.len() <= 2 * b.shards[0].sessions.len() + 1024);
    b.advance(1001.0);
    assert!(b.shards[0].sessions.is_empty(), "the session expired");
}

#[test]
fn disconnect_cannot_revive_a_zero_expiry_session() {
    let mut b = Broker::new(1);
    let (mut c, _) = b.connect(connect("c", V5, true));
    b.disconnect(&mut c, ReasonCode::Success, Some(30));
    let packets = std::mem::take(&mut c.inbox);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
        "[MQTT-3.14.2-2]"
    );
}

#[test]
fn takeover_tells_the_old_connection_and_keeps_inflight_state() {
    let mut b = Broker::new(2);
    let id = id_on(&b, 1, "t");
    let mut c = connect(&id, V5, false);
    c.properties.session_expiry_interval_s = Some(60);
    c.will = Some(Will {
        topic: "will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        delay_interval_s: None,
        properties: MessageProperties::default(),
    });
    let (mut watcher, _) = b.connect(connect("watcher", V5, true));
    b.subscribe(&mut watcher, &[("will", opts(QoS::AtMostOnce))]);
    let (mut old, _) = b.connect(c.clone());
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut old, &[("t", opts(QoS::AtLeastOnce))]);
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"in flight", QoS::AtLeastOnce, Some(1))),
    );
    assert_eq!(b.publishes(&mut old).len(), 1);
    let (mut new, connack) = b.connect(c);
    assert!(connack.session_present);
    let told = b.received(&mut old);
    assert!(
        matches!(&told[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver)
    );
    assert!(old.closed);
    assert_eq!(
        payloads(&b.publishes(&mut watcher)),
        [b"gone"],
        "exactly one will"
    );
    let again = b.publishes(&mut new);
    assert_eq!(payloads(&again), [b"in flight"]);
    assert!(again[0].dup);
}

// ----- wills -----

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

fn watcher(b: &mut Broker) -> Client {
    let (mut w, _) = b.connect(connect("watcher", V5, true));
    b.subscribe(&mut w, &[("will", opts(QoS::AtLeastOnce))]);
    w
}

#[test]
fn will_is_sent_on_abrupt_close_only() {
    let mut b = Broker::new(2);
    let mut w = watcher(&mut b);
    let (mut abrupt, _) = b.connect(will_connect("a", None, 0));
    let (mut clean, _) = b.connect(will_connect("c", None, 0));
    b.disconnect(&mut clean, ReasonCode::Success, None);
    assert!(b.publishes(&mut w).is_empty(), "no will on DISCONNECT 0x00");
    b.drop_connection(&mut abrupt);
    assert_eq!(payloads(&b.publishes(&mut w)), [b"bye"]);
    let (mut asked, _) = b.connect(will_connect("d", None, 0));
    b.disconnect(&mut asked, ReasonCode::DisconnectWithWillMessage, None);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "0x04 asks for the will"
    );
    let (mut failing, _) = b.connect(will_connect("e", None, 0));
    b.disconnect(&mut failing, ReasonCode::UnspecifiedError, None);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "only 0x00 deletes the will [MQTT-3.1.2-10]"
    );
}

#[test]
fn will_delay_is_cancelled_by_a_reconnect() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let (mut c, _) = b.connect(will_connect("c", Some(5), 60));
    b.drop_connection(&mut c);
    b.advance(3.0);
    assert!(b.publishes(&mut w).is_empty());
    let (_, connack) = b.connect(will_connect("c", Some(5), 60));
    assert!(connack.session_present);
    b.advance(10.0);
    assert!(b.publishes(&mut w).is_empty(), "[MQTT-3.1.3-9]");
}

#[test]
fn will_is_published_at_delay_or_session_end_whichever_first() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let (mut delayed, _) = b.connect(will_connect("d", Some(3), 60));
    let (mut expiring, _) = b.connect(will_connect("e", Some(30), 2));
    b.drop_connection(&mut delayed);
    b.drop_connection(&mut expiring);
    b.advance(2.5);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "the session of e ended at 2 s"
    );
    b.advance(1.0);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "d's delay of 3 s ran out"
    );
}

#[test]
fn keepalive_timeout_disconnects_and_sends_the_will() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let mut c = will_connect("k", None, 0);
    c.keep_alive_s = 2;
    let (mut k, _) = b.connect(c);
    b.advance(2.9);
    assert!(!k.closed, "1.5 x keep alive has not passed");
    b.send(&mut k, Packet::PingReq);
    assert!(matches!(&b.received(&mut k)[..], [Packet::PingResp]));
    b.advance(3.1);
    let packets = b.received(&mut k);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout)
    );
    assert!(k.closed);
    assert_eq!(payloads(&b.publishes(&mut w)), [b"bye"]);
}

// ----- retained -----

#[test]
fn retained_messages_set_replace_clear_across_shards() {
    let mut b = Broker::new(3);
    let (mut p, _) = b.connect(connect(&id_on(&b, 2, "p"), V311, true));
    let retained = |payload: &[u8]| {
        let mut m = publish("r/a", payload, QoS::AtLeastOnce, Some(1));
        m.retain = true;
        Packet::Publish(m)
    };
    b.send(&mut p, retained(b"one"));
    b.send(&mut p, retained(b"two"));
    let (mut s1, _) = b.connect(connect(&id_on(&b, 0, "s"), V311, true));
    b.subscribe(&mut s1, &[("r/#", opts(QoS::AtLeastOnce))]);
    let got = b.publishes(&mut s1);
    assert_eq!(payloads(&got), [b"two"]);
    assert!(got[0].retain, "[MQTT-3.3.1-8] retained on subscribe");
    b.send(&mut p, retained(b""));
    let live = b.publishes(&mut s1);
    assert_eq!(
        live.len(),
        1,
        "the clearing message is delivered to live subscribers"
    );
    assert!(
        !live[0].retain,
        "[MQTT-3.3.1-9] live messages have retain 0"
    );
    let (mut s2, _) = b.connect(connect(&id_on(&b, 1, "t"), V311, true));
    b.subscribe(&mut s2, &[("r/#", opts(QoS::AtLeastOnce))]);
    assert!(b.publishes(&mut s2).is_empty(), "cleared");
}

#[test]
fn retain_handling_and_retain_as_published() {
    let mut b = Broker::new(1);
    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut m = publish("r", b"kept", QoS::AtMostOnce, None);
    m.retain = true;
    b.send(&mut p, Packet::Publish(m.clone()));
    let (mut s, _) = b.connect(connect("s", V5, true));
    let if_new = SubscriptionOptions {
        retain_handling: RetainHandling::SendIfNewSubscription,
        ..opts(QoS::AtMostOnce)
    };
    b.subscribe(&mut s, &[("r", if_new)]);
    assert_eq!(b.publishes(&mut s).len(), 1);
    b.subscribe(&mut s, &[("r", if_new)]);
    assert!(b.publishes(&mut s).is_empty(), "not on a re-subscribe");
    let never = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..opts(QoS::AtMostOnce)
    };
    b.subscribe(&mut s, &[("r", never)]);
    assert!(b.publishes(&mut s).is_empty());
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..opts(QoS::AtMostOnce)
    };
    b.subscribe(&mut s, &[("r", rap)]);
    b.publishes(&mut s);
    b.send(&mut p, Packet::Publish(m));
    assert!(b.publishes(&mut s)[0].retain, "retain as published");
}

/// Proves retained updates to one topic published on two shards at once end the same on both
/// shards, whatever order each shard applied them in: the newest wins everywhere, and so does
/// a newer clearing against an older update that arrives after it.
#[test]
fn concurrent_retained_updates_converge_across_shards() {
    let mut b = Broker::new(2);
    let (mut p0, _) = b.connect(connect(&id_on(&b, 0, "p"), V5, true));
    let (mut p1, _) = b.connect(connect(&id_on(&b, 1, "q"), V5, true));
    let retained = |payload: &[u8]| {
        let mut m = publish("t", payload, QoS::AtMostOnce, None);
        m.retain = true;
        let mut bytes = BytesMut::new();
        Packet::Publish(m).encode(V5, &mut bytes);
        bytes
    };
    // For a new subscriber on each shard: the retained payloads it is sent.
    let seen_by_new_subscribers = |b: &mut Broker| -> Vec<Vec<Vec<u8>>> {
        (0..2)
            .map(|shard| {
                let id = id_on(b, shard, "late");
                let (mut s, _) = b.connect(connect(&id, V5, true));
                b.subscribe(&mut s, &[("t", opts(QoS::AtMostOnce))]);
                let got: Vec<Vec<u8>> = b
                    .publishes(&mut s)
                    .iter()
                    .map(|p| p.payload.to_vec())
                    .collect();
                b.disconnect(&mut s, ReasonCode::NORMAL_DISCONNECTION, None);
                got
            })
            .collect()
    };
    // Each shard applies its own update first and the other's second.
    b.shards[p0.shard].input(p0.conn, b.now, &retained(b"older"));
    b.now += Duration::from_millis(1);
    b.shards[p1.shard].input(p1.conn, b.now, &retained(b"newer"));
    b.received(&mut p0);
    b.received(&mut p1);
    assert_eq!(
        seen_by_new_subscribers(&mut b),
        [vec![b"newer".to_vec()], vec![b"newer".to_vec()]]
    );
    // A clearing on shard 0 is newer than an update shard 1 applies before hearing of it.
    b.now += Duration::from_millis(1);
    b.shards[p1.shard].input(p1.conn, b.now, &retained(b"stale"));
    b.now += Duration::from_millis(1);
    b.shards[p0.shard].input(p0.conn, b.now, &retained(b""));
    b.received(&mut p0);
    b.received(&mut p1);
    assert_eq!(
        seen_by_new_subscribers(&mut b),
        [Vec::<Vec<u8>>::new(), vec![]]
    );
}

#[test]
fn expired_retained_message_is_not_delivered() {
    let mut b = Broker::new(1);
    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut m = publish("r", b"short", QoS::AtMostOnce, None);
    m.retain = true;
    m.properties.message.message_expiry_interval_s = Some(2);
    b.send(&mut p, Packet::Publish(m));
    b.advance(3.0);
    let (mut s, _) = b.connect(connect("s", V5, true));
    b.subscribe(&mut s, &[("r", opts(QoS::AtMostOnce))]);
    assert!(b.publishes(&mut s).is_empty());
}

// ----- matching -----

#[test]
fn dollar_topics_need_an_explicit_filter() {
    let mut b = Broker::new(1);
    let (mut s, _) = b.connect(connect("s", V311, true));
    let (mut p, _) = b.connect(connect("p", V311, true));
    b.subscribe(
        &mut s,
        &[("#", opts(QoS::AtMostOnce)), ("+/x", opts(QoS::AtMostOnce))],
    );
    b.send(
        &mut p,
        Packet::Publish(publish("$sys/x", b"hidden", QoS::AtMostOnce, None)),
    );
    assert!(b.publishes(&mut s).is_empty(), "[MQTT-4.7.2-1]");
    b.subscribe(&mut s, &[("$sys/#", opts(QoS::AtMostOnce))]);
    b.send(
        &mut p,
        Packet::Publish(publish("$sys/x", b"seen", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut s)), [b"seen"]);
}

#[test]
fn overlapping_subscriptions_give_one_copy_with_every_identifier() {
    let mut b = Broker::new(1);
    let (mut s, _) = b.connect(connect("s", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    for (id, filter, qos) in [(1, "a/+", QoS::AtMostOnce), (2, "a/#", QoS::AtLeastOnce)] {
        let mut packet = Subscribe {
            packet_id: pid(id),
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                options: opts(qos),
            }],
            properties: SubscribeProperties::default(),
        };
        packet.properties.subscription_identifier = NonZeroU32::new(u32::from(id) * 10);
        b.send(&mut s, Packet::Subscribe(packet));
    }
    b.received(&mut s);
    b.send(
        &mut p,
        Packet::Publish(publish("a/b", b"x", QoS::ExactlyOnce, Some(1))),
    );
    let got = b.publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].qos,
        QoS::AtLeastOnce,
        "the highest of the matching subscriptions"
    );
    let mut ids: Vec<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort();
    assert_eq!(ids, [10, 20]);
}

#[test]
fn no_local_suppresses_own_messages() {
    let mut b = Broker::new(1);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    b.subscribe(&mut c, &[("t", no_local)]);
    b.send(
        &mut c,
        Packet::Publish(publish("t", b"mine", QoS::AtMostOnce, None)),
    );
    assert!(b.publishes(&mut c).is_empty());
    let (mut other, _) = b.connect(connect("o", V5, true));
    b.send(
        &mut other,
        Packet::Publish(publish("t", b"theirs", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut c)), [b"theirs"]);
}

#[test]
fn filter_limits_and_subscription_quota_answer_in_suback() {
    let mut settings = Settings {
        endpoints: vec![EndpointSettings::default()],
        ..Settings::default()
    };
    settings.broker.subscriptions_max = 2;
    settings.broker.topic_levels_max = 3;
    let mut b = Broker::with(1, settings);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let filters = [
        ("a/b/c/d", opts(QoS::AtMostOnce)),
        ("a", opts(QoS::AtLeastOnce)),
        ("b", opts(QoS::AtMostOnce)),
        ("c", opts(QoS::AtMostOnce)),
    ];
    let codes = b.subscribe(&mut c, &filters);
    let expected = [
        ReasonCode::TopicFilterInvalid,
        ReasonCode::GrantedQoS1,
        ReasonCode::Success,
        ReasonCode::QuotaExceeded,
    ];
    assert_eq!(
        codes, expected,
        "too deep for this server: 0x8F; over quota: 0x97"
    );
    let codes = b.subscribe(&mut c, &[("a", opts(QoS::AtMostOnce))]);
    assert_eq!(
        codes,
        [ReasonCode::Success],
        "replacing an existing subscription is within quota"
    );
}

#[test]
fn malformed_filters_are_protocol_errors() {
    for (filter, options) in [
        ("a/#/b", opts(QoS::AtMostOnce)),
        ("a+", opts(QoS::AtMostOnce)),
        ("$share/g", opts(QoS::AtMostOnce)),
        (
            "$share/g/t",
            SubscriptionOptions {
                no_local: true,
                ..opts(QoS::AtMostOnce)
            },
        ),
    ] {
        let mut b = Broker::new(1);
        let (mut c, _) = b.connect(connect("c", V5, true));
        b.send(
            &mut c,
            subscribe(1, &[("ok", opts(QoS::AtMostOnce)), (filter, options)]),
        );
        let packets = std::mem::take(&mut c.inbox);
        assert!(
            matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
            "{filter}: {packets:?}"
        );
        assert!(c.closed, "{filter}");
        assert!(
            b.shards[0].subs.is_empty(),
            "{filter}: nothing of the packet was applied"
        );
    }
}

#[test]
fn unsubscribe_reports_what_existed() {
    let mut b = Broker::new(2);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let (mut p, _) = b.connect(connect(&id_on(&b, 1, "p"), V5, true));
    b.subscribe(&mut c, &[("t", opts(QoS::AtMostOnce))]);
    let unsub = Unsubscribe {
        packet_id: pid(3),
        filters: vec!["t".into(), "u".into()],
        user_properties: vec![],
    };
    b.send(&mut c, Packet::Unsubscribe(unsub));
    let packets = b.received(&mut c);
    let [Packet::UnsubAck(ack)] = &packets[..] else {
        panic!("{packets:?}")
    };
    assert_eq!(
        ack.reason_codes,
        [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert!(b.publishes(&mut c).is_empty());
    let acks = b.received(&mut p);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NoMatchingSubscribers)
    );
}

// ----- shared subscriptions -----

#[test]
fn shared_group_delivers_each_message_once_across_shards() {
    let mut b = Broker::new(2);
    let (mut m1, _) = b.connect(connect(&id_on(&b, 0, "m"), V5, true));
    let (mut m2, _) = b.connect(connect(&id_on(&b, 1, "n"), V5, true));
    let (mut plain, _) = b.connect(connect("plain", V5, true));
    b.subscribe(&mut m1, &[("$share/g/jobs/+", opts(QoS::AtLeastOnce))]);
    b.subscribe(
        &mut m2,
        &[("$SharedSubscription/g/jobs/+", opts(QoS::AtLeastOnce))],
    );
    b.subscribe(&mut plain, &[("jobs/#", opts(QoS::AtMostOnce))]);
    let (mut p, _) = b.connect(connect("p", V5, true));
    for i in 0..10u8 {
        b.send(
            &mut p,
            Packet::Publish(publish(
                "jobs/x",
                &[i],
                QoS::AtLeastOnce,
                Some(u16::from(i) + 1),
            )),
        );
    }
    let (a, c) = (b.publishes(&mut m1), b.publishes(&mut m2));
    assert!(
        !a.is_empty() && !c.is_empty(),
        "both members get work: {} and {}",
        a.len(),
        c.len()
    );
    let mut all: Vec<u8> = a.iter().chain(&c).map(|p| p.payload[0]).collect();
    all.sort();
    assert_eq!(
        all,
        (0..10).collect::<Vec<_>>(),
        "each message exactly once"
    );
    assert_eq!(
        b.publishes(&mut plain).len(),
        10,
        "a plain subscriber gets everything"
    );
}

/// Proves `$SharedSubscription/g/f` and `$share/g/f` are one subscription of a session: the
/// second replaces the first, either spelling unsubscribes it, and a session that held both
/// spellings ends without touching a share group twice (which once panicked).
#[test]
fn both_share_spellings_are_one_subscription() {
    let mut b = Broker::new(1);
    let (mut m, _) = b.connect(connect("m", V5, true));
    let codes = b.subscribe(
        &mut m,
        &[
            ("$share/g/t", opts(QoS::AtLeastOnce)),
            ("$SharedSubscription/g/t", opts(QoS::AtLeastOnce)),
        ],
    );
    assert_eq!(codes, [ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS1]);
    let session = b.shards[0].conns[m.conn as usize].session.unwrap();
    assert_eq!(
        b.shards[0].sessions[session as usize].subscriptions.len(),
        1
    );
    let unsub = Unsubscribe {
        packet_id: pid(2),
        filters: vec!["$SharedSubscription/g/t".into(), "$share/g/t".into()],
        user_properties: vec![],
    };
    b.send(&mut m, Packet::Unsubscribe(unsub));
    let packets = b.received(&mut m);
    assert!(
        matches!(&packets[..], [Packet::UnsubAck(a)]
            if a.reason_codes == [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]),
        "{packets:?}"
    );
    b.subscribe(
        &mut m,
        &[
            ("$SharedSubscription/g/t", opts(QoS::AtLeastOnce)),
            ("$share/g/t", opts(QoS::AtLeastOnce)),
        ],
    );
    b.disconnect(&mut m, ReasonCode::NORMAL_DISCONNECTION, None);
    assert!(b.shards[0].shares.is_empty());
    let (mut n, _) = b.connect(connect("n", V5, true));
    b.subscribe(&mut n, &[("$share/g/t", opts(QoS::AtMostOnce))]);
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut n)), [b"x"]);
}

#[test]
fn departed_member_messages_go_to_the_remaining_member() {
    for shards in [1, 2] {
        let mut b = Broker::new(shards);
        let mut c1 = connect(&id_on(&b, 0, "m"), V5, true);
        c1.properties.receive_maximum = NonZeroU16::new(1);
        let (mut m1, _) = b.connect(c1);
        let (mut m2, _) = b.connect(connect(&id_on(&b, shards - 1, "n"), V5, true));
        b.subscribe(&mut m1, &[("$share/g/t", opts(QoS::AtLeastOnce))]);
        b.subscribe(&mut m2, &[("$share/g/t", opts(QoS::AtLeastOnce))]);
        let (mut p, _) = b.connect(connect("p", V5, true));
        for i in 0..6u8 {
            b.send(
                &mut p,
                Packet::Publish(publish("t", &[i], QoS::AtLeastOnce, Some(u16::from(i) + 1))),
            );
        }
        let first = b.publishes(&mut m1); // never acknowledged
        let mut got: Vec<u8> = b.publishes(&mut m2).iter().map(|p| p.payload[0]).collect();
        b.drop_connection(&mut m1);
        got.extend(b.publishes(&mut m2).iter().map(|p| p.payload[0]));
        got.sort();
        assert!(!first.is_empty(), "shards {shards}: m1 had work");
        assert_eq!(
            got,
            (0..6).collect::<Vec<_>>(),
            "shards {shards}: none lost"
        );
    }
}

// ----- v5 features -----

#[test]
fn inbound_topic_aliases() {
    let mut b = Broker::new(1);
    let (mut s, _) = b.connect(connect("s", V311, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut s, &[("long/topic", opts(QoS::AtMostOnce))]);
    let mut m = publish("long/topic", b"1", QoS::AtMostOnce, None);
    m.properties.topic_alias = NonZeroU16::new(3);
    b.send(&mut p, Packet::Publish(m.clone()));
    m.topic = ByteString::new();
    m.payload = Bytes::from_static(b"2");
    b.send(&mut p, Packet::Publish(m.clone()));
    let got = b.publishes(&mut s);
    assert_eq!(
        got.iter().map(|p| &*p.topic).collect::<Vec<_>>(),
        ["long/topic", "long/topic"]
    );
    m.properties.topic_alias = NonZeroU16::new(4);
    b.send(&mut p, Packet::Publish(m.clone()));
    assert!(
        matches!(&b.received(&mut p)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError)
    );
    let (mut q, _) = b.connect(connect("q", V5, true));
    m.properties.topic_alias = NonZeroU16::new(17);
    m.topic = "x".into();
    b.send(&mut q, Packet::Publish(m));
    assert!(
        matches!(&b.received(&mut q)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn outbound_topic_aliases_are_assigned_once() {
    let mut b = Broker::new(1);
    let mut c = connect("s", V5, true);
    c.properties.topic_alias_maximum = Some(1);
    let (mut s, _) = b.connect(c);
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut s, &[("#", opts(QoS::AtMostOnce))]);
    for topic in ["a", "a", "b"] {
        b.send(
            &mut p,
            Packet::Publish(publish(topic, b"x", QoS::AtMostOnce, None)),
        );
    }
    let got = b.publishes(&mut s);
    let seen: Vec<(&str, Option<u16>)> = got
        .iter()
        .map(|p| (&*p.topic, p.properties.topic_alias.map(|a| a.get())))
        .collect();
    assert_eq!(seen, [("a", Some(1)), ("", Some(1)), ("b", None)]);
}

#[test]
fn messages_larger_than_the_client_maximum_are_dropped_for_it_only() {
    let mut b = Broker::new(1);
    let mut c = connect("small", V5, true);
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    let (mut small, _) = b.connect(c);
    let (mut big, _) = b.connect(connect("big", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut small, &[("t", opts(QoS::AtLeastOnce))]);
    b.subscribe(&mut big, &[("t", opts(QoS::AtLeastOnce))]);
    b.send(
        &mut p,
        Packet::Publish(publish("t", &[7; 100], QoS::AtLeastOnce, Some(1))),
    );
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"small", QoS::AtLeastOnce, Some(2))),
    );
    assert_eq!(payloads(&b.publishes(&mut small)), [b"small"]);
    assert_eq!(b.publishes(&mut big).len(), 2);
    assert!(!small.closed);
}

/// Proves a message in flight is not resent to a resumed session whose new connection asked
/// for smaller packets: it is dropped for that client, its packet id freed, and what fits
/// still flows.
#[test]
fn resend_respects_the_new_connections_maximum_packet_size() {
    let mut b = Broker::new(1);
    let mut c = connect("s", V5, false);
    c.properties.session_expiry_interval_s = Some(60);
    let (mut s, _) = b.connect(c.clone());
    b.subscribe(&mut s, &[("t", opts(QoS::AtLeastOnce))]);
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.send(
        &mut p,
        Packet::Publish(publish("t", &[7; 100], QoS::AtLeastOnce, Some(1))),
    );
    assert_eq!(b.publishes(&mut s).len(), 1); // never acknowledged
    b.drop_connection(&mut s);
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    let (mut s, connack) = b.connect(c);
    assert!(connack.session_present);
    assert!(
        b.publishes(&mut s).is_empty(),
        "the 100-byte message is not resent"
    );
    assert_eq!(b.shards[0].stats.messages_oversize, 1);
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"fits", QoS::AtLeastOnce, Some(2))),
    );
    assert_eq!(payloads(&b.publishes(&mut s)), [b"fits"]);
    let session = b.shards[0].conns[s.conn as usize].session.unwrap();
    let d = b.shards[0].sessions[session as usize]
        .delivery
        .as_ref()
        .unwrap();
    assert_eq!(d.inflight.len(), 1, "only the new message is in flight");
}

#[test]
fn message_expiry_counts_down_in_the_queue() {
    let mut b = Broker::new(1);
    let mut c = connect("s", V5, false);
    c.properties.session_expiry_interval_s = Some(100);
    let (mut s, _) = b.connect(c.clone());
    b.subscribe(&mut s, &[("t", opts(QoS::AtLeastOnce))]);
    b.drop_connection(&mut s);
    let (mut p, _) = b.connect(connect("p", V5, true));
    for (secs, text) in [(5, &b"short"[..]), (60, b"long")] {
        let mut m = publish("t", text, QoS::AtLeastOnce, Some(secs as u16));
        m.properties.message.message_expiry_interval_s = Some(secs);
        b.send(&mut p, Packet::Publish(m));
    }
    b.advance(10.0);
    let (mut s, _) = b.connect(c);
    let got = b.publishes(&mut s);
    assert_eq!(
        payloads(&got),
        [b"long"],
        "the expired message is never delivered"
    );
    assert_eq!(
        got[0].properties.message.message_expiry_interval_s,
        Some(50)
    );
}

#[test]
fn properties_pass_through_untouched() {
    let mut b = Broker::new(1);
    let (mut s, _) = b.connect(connect("s", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut s, &[("t", opts(QoS::AtMostOnce))]);
    let mut m = publish("t", b"{}", QoS::AtMostOnce, None);
    m.properties.message = MessageProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        user_properties: vec![
            ("k".into(), "1".into()),
            ("k".into(), "2".into()),
            ("a".into(), "b".into()),
        ],
        message_expiry_interval_s: None,
    };
    b.send(&mut p, Packet::Publish(m.clone()));
    let got = b.publishes(&mut s);
    assert_eq!(got[0].properties.message, m.properties.message);
}

/// Proves a QoS 2 PUBLISH resent after a reconnect gets its PUBREC again even while an
/// earlier QoS 1 PUBLISH still waits for another shard's answer: in order, behind its PUBACK.
#[test]
fn resent_qos2_publish_is_acknowledged_behind_waiting_acks() {
    let mut b = Broker::new(2);
    let (mut sub, _) = b.connect(connect(&id_on(&b, 1, "s"), V5, true));
    b.subscribe(&mut sub, &[("t", opts(QoS::AtLeastOnce))]);
    let mut c = connect(&id_on(&b, 0, "p"), V5, false);
    c.properties.session_expiry_interval_s = Some(60);
    let (mut p, _) = b.connect(c.clone());
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"two", QoS::ExactlyOnce, Some(6))),
    );
    b.drop_connection(&mut p); // its PUBREC never arrived
    let (mut p, connack) = b.connect(c);
    assert!(connack.session_present);
    let mut pipelined = BytesMut::new();
    Packet::Publish(publish("t", b"one", QoS::AtLeastOnce, Some(5))).encode(V5, &mut pipelined);
    let mut again = publish("t", b"two", QoS::ExactlyOnce, Some(6));
    again.dup = true;
    Packet::Publish(again).encode(V5, &mut pipelined);
    // Both arrive before shard 1 has answered for the QoS 1 message.
    b.shards[p.shard].input(p.conn, b.now, &pipelined);
    let acks: Vec<(u8, u16)> = b
        .received(&mut p)
        .iter()
        .map(|packet| match packet {
            Packet::PubAck(a) => (4, a.packet_id.get()),
            Packet::PubRec(a) => (5, a.packet_id.get()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(acks, [(4, 5), (5, 6)]);
    assert_eq!(
        payloads(&b.publishes(&mut sub)),
        [b"two", b"one"],
        "the resent message is not routed twice"
    );
}

// ----- queue limits -----

fn limited(max: u32, behavior: QueueBehavior) -> Broker {
    let mut endpoint = EndpointSettings::default();
    endpoint.topic_rules[0].queue_messages_max = max;
    endpoint.topic_rules[0].queue_behavior = behavior;
    Broker::with(
        2,
        Settings {
            endpoints: vec![endpoint],
            ..Settings::default()
        },
    )
}

fn offline_subscriber(b: &mut Broker, id: &str) -> Connect {
    let c = connect(id, V311, false);
    let (mut s, _) = b.connect(c.clone());
    b.subscribe(&mut s, &[("q", opts(QoS::AtLeastOnce))]);
    b.drop_connection(&mut s);
    c
}

#[test]
fn reject_new_messages_keeps_the_first_and_tells_v5_publishers() {
    let mut b = limited(3, QueueBehavior::RejectNewMessages);
    let c = offline_subscriber(&mut b, "s");
    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut reasons = Vec::new();
    for i in 1..=5u8 {
        b.send(
            &mut p,
            Packet::Publish(publish("q", &[i], QoS::AtLeastOnce, Some(u16::from(i)))),
        );
        let Some(Packet::PubAck(a)) = b.received(&mut p).pop() else {
            panic!("PUBACK")
        };
        reasons.push(a.reason_code);
    }
    assert_eq!(
        reasons[2..],
        [
            ReasonCode::Success,
            ReasonCode::QuotaExceeded,
            ReasonCode::QuotaExceeded
        ]
    );
    let (mut s, _) = b.connect(c);
    let got: Vec<u8> = b.publishes(&mut s).iter().map(|p| p.payload[0]).collect();
    assert_eq!(got, [1, 2, 3]);
}

/// Proves expired messages do not hold an offline session's queue full: once the first three
/// have expired, a fourth message is accepted and is the only one delivered.
#[test]
fn expired_messages_leave_room_in_an_offline_queue() {
    let mut b = limited(3, QueueBehavior::RejectNewMessages);
    let c = offline_subscriber(&mut b, "s");
    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut send = |b: &mut Broker, i: u8, expiry: Option<u32>| {
        let mut m = publish("q", &[i], QoS::AtLeastOnce, Some(u16::from(i)));
        m.properties.message.message_expiry_interval_s = expiry;
        b.send(&mut p, Packet::Publish(m));
        match b.received(&mut p).pop() {
            Some(Packet::PubAck(a)) => a.reason_code,
            other => panic!("PUBACK expected, got {other:?}"),
        }
    };
    for i in 1..=3 {
        assert_eq!(send(&mut b, i, Some(10)), ReasonCode::Success);
    }
    assert_eq!(send(&mut b, 4, None), ReasonCode::QuotaExceeded);
    b.advance(11.0);
    assert_eq!(send(&mut b, 5, None), ReasonCode::Success);
    let (mut s, _) = b.connect(c);
    let got: Vec<u8> = b.publishes(&mut s).iter().map(|p| p.payload[0]).collect();
    assert_eq!(got, [5]);
}

#[test]
fn discard_old_messages_keeps_the_newest_per_session() {
    let mut b = limited(3, QueueBehavior::DiscardOldMessages);
    let (s, t) = (id_on(&b, 0, "s"), id_on(&b, 1, "t"));
    let c1 = offline_subscriber(&mut b, &s);
    let c2 = offline_subscriber(&mut b, &t);
    let (mut p, _) = b.connect(connect("p", V311, true));
    for i in 1..=5u8 {
        b.send(
            &mut p,
            Packet::Publish(publish("q", &[i], QoS::AtLeastOnce, Some(u16::from(i)))),
        );
    }
    for c in [c1, c2] {
        let (mut s, _) = b.connect(c);
        let got: Vec<u8> = b.publishes(&mut s).iter().map(|p| p.payload[0]).collect();
        assert_eq!(got, [3, 4, 5], "each session has its own limit");
    }
}

// ----- policies -----

#[test]
fn policies_decide_who_connects_publishes_and_subscribes() {
    let mut endpoint = EndpointSettings::default();
    endpoint.connection_rules[0].client_id = IdFilter::parse("dev-*");
    let rule = &mut endpoint.topic_rules[0];
    rule.topic = TopicPattern::parse("devices/${ClientID}/*").unwrap();
    rule.subscribe = false;
    let mut b = Broker::with(
        1,
        Settings {
            endpoints: vec![endpoint],
            ..Settings::default()
        },
    );
    let (_, refused) = b.connect(connect("app", V5, true));
    assert_eq!(refused.reason_code, ReasonCode::NotAuthorized);
    let (mut d, _) = b.connect(connect("dev-1", V5, true));
    b.send(
        &mut d,
        Packet::Publish(publish("devices/dev-2/x", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert!(
        matches!(&b.received(&mut d)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NotAuthorized)
    );
    b.send(
        &mut d,
        Packet::Publish(publish("devices/dev-1/x", b"x", QoS::AtLeastOnce, Some(2))),
    );
    assert!(
        matches!(&b.received(&mut d)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NoMatchingSubscribers)
    );
    assert_eq!(
        b.subscribe(&mut d, &[("devices/dev-1/x", opts(QoS::AtMostOnce))]),
        [ReasonCode::NotAuthorized]
    );
    let (mut v3, _) = b.connect(connect("dev-3", V311, true));
    b.send(
        &mut v3,
        Packet::Publish(publish("elsewhere", b"x", QoS::AtMostOnce, None)),
    );
    assert!(v3.closed, "[MQTT-3.3.5-2] a v3 client cannot be told");
}

#[test]
fn shutdown_tells_v5_clients_and_keeps_wills() {
    let mut b = Broker::new(1);
    let mut w = watcher(&mut b);
    let (mut c, _) = b.connect(will_connect("c", None, 0));
    for shard in &mut b.shards {
        shard.shutdown(b.now);
    }
    let packets = b.received(&mut c);
    assert!(
        matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ServerShuttingDown)
    );
    assert!(c.closed);
    let packets = b.received(&mut w);
    assert!(
        packets.iter().all(|p| !matches!(p, Packet::Publish(_))),
        "no will on shutdown: {packets:?}"
    );
}

/// Every idle connection costs its Connection and Session (plus the server's table entry); a
/// field added carelessly here is paid a million times. Raise these bounds knowingly.
#[test]
fn per_connection_state_stays_small() {
    // 112: the identity a transport establishes (TLS, the client certificate) took the last
    // free bytes of 104.
    assert!(std::mem::size_of::<crate::conn::Connection>() <= 112);
    // 96: a session's subscriptions became one boxed table (a word) instead of a `Vec`.
    assert!(std::mem::size_of::<crate::session::Session>() <= 96);
    assert!(
        std::mem::size_of::<crate::outbuf::OutBuf>() <= 8,
        "an idle OutBuf is one word"
    );
    assert!(
        std::mem::size_of::<crate::conn::InBuf>() <= 8,
        "an idle InBuf is one word"
    );
}

#[test]
fn v5_publisher_learns_of_a_full_queue_on_another_shard() {
    let mut b = limited(1, QueueBehavior::RejectNewMessages);
    let sid = id_on(&b, 1, "s");
    let c = offline_subscriber(&mut b, &sid);
    let pid_ = id_on(&b, 0, "p");
    let (mut p, _) = b.connect(connect(&pid_, V5, true));
    assert_eq!(
        p.shard, 0,
        "publisher and subscriber are on different shards"
    );
    for i in 1..=3u8 {
        b.send(
            &mut p,
            Packet::Publish(publish("q", &[i], QoS::AtLeastOnce, Some(u16::from(i)))),
        );
    }
    let reasons: Vec<(u16, ReasonCode)> = b
        .received(&mut p)
        .into_iter()
        .map(|packet| match packet {
            Packet::PubAck(a) => (a.packet_id.get(), a.reason_code),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected = [
        (1, ReasonCode::Success),
        (2, ReasonCode::QuotaExceeded),
        (3, ReasonCode::QuotaExceeded),
    ];
    assert_eq!(reasons, expected, "in order, with the other shard's answer");
    let (mut s, _) = b.connect(c);
    assert_eq!(b.publishes(&mut s).len(), 1);
}

#[test]
fn acknowledgements_keep_publish_order_while_waiting_for_other_shards() {
    let mut b = Broker::new(2);
    let (mut remote_sub, _) = b.connect(connect(&id_on(&b, 1, "r"), V5, true));
    b.subscribe(&mut remote_sub, &[("far", opts(QoS::AtLeastOnce))]);
    let (mut p, _) = b.connect(connect(&id_on(&b, 0, "p"), V5, true));
    // Both PUBLISHes arrive in one read: the first waits for shard 1, the second (no
    // subscriber anywhere) must not overtake it.
    let mut bytes = BytesMut::new();
    Packet::Publish(publish("far", b"1", QoS::AtLeastOnce, Some(1))).encode(V5, &mut bytes);
    Packet::Publish(publish("nowhere", b"2", QoS::AtLeastOnce, Some(2))).encode(V5, &mut bytes);
    b.shards[p.shard].input(p.conn, b.now, &bytes);
    b.collect(&mut p);
    assert!(
        p.inbox.is_empty(),
        "nothing is acknowledged before shard 1 answers"
    );
    let acks: Vec<(u16, ReasonCode)> = b
        .received(&mut p)
        .into_iter()
        .map(|packet| match packet {
            Packet::PubAck(a) => (a.packet_id.get(), a.reason_code),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        acks,
        [
            (1, ReasonCode::Success),
            (2, ReasonCode::NoMatchingSubscribers)
        ]
    );
}

#[test]
fn large_payloads_arrive_whole_to_every_subscriber() {
    let mut b = Broker::new(1);
    let (mut s1, _) = b.connect(connect("s1", V311, true));
    let (mut s2, _) = b.connect(connect("s2", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(&mut s1, &[("big", opts(QoS::AtLeastOnce))]);
    b.subscribe(&mut s2, &[("big", opts(QoS::AtMostOnce))]);
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    b.send(
        &mut p,
        Packet::Publish(publish("big", &payload, QoS::AtLeastOnce, Some(1))),
    );
    b.send(
        &mut p,
        Packet::Publish(publish("big", b"small after", QoS::AtLeastOnce, Some(2))),
    );
    for s in [&mut s1, &mut s2] {
        let got = b.publishes(s);
        assert_eq!(payloads(&got), [&payload[..], b"small after"]);
    }
}

#[test]
fn fanout_copies_one_encoding_with_each_subscribers_packet_id() {
    let mut b = Broker::new(1);
    let (mut s1, _) = b.connect(connect("s1", V311, true));
    let (mut s2, _) = b.connect(connect("s2", V311, true));
    let (mut s3, _) = b.connect(connect("s3", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.subscribe(
        &mut s1,
        &[
            ("t", opts(QoS::AtLeastOnce)),
            ("first", opts(QoS::AtLeastOnce)),
        ],
    );
    b.subscribe(&mut s2, &[("t", opts(QoS::AtLeastOnce))]);
    b.subscribe(&mut s3, &[("t", opts(QoS::AtLeastOnce))]);
    b.send(
        &mut p,
        Packet::Publish(publish("first", b"0", QoS::AtLeastOnce, Some(1))),
    );
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"shared bytes", QoS::AtLeastOnce, Some(2))),
    );
    let got1 = b.publishes(&mut s1);
    let (got2, got3) = (b.publishes(&mut s2), b.publishes(&mut s3));
    assert_eq!(
        got1[1].packet_id,
        NonZeroU16::new(2),
        "s1 already had id 1 in flight"
    );
    assert_eq!(got2[0].packet_id, NonZeroU16::new(1));
    for got in [&got1[1], &got2[0], &got3[0]] {
        assert_eq!(
            (&*got.topic, &got.payload[..], got.qos),
            ("t", &b"shared bytes"[..], QoS::AtLeastOnce)
        );
    }
}

// ----- journal -----

/// Records what the shard tells its journal, as text.
#[derive(Clone, Default)]
struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl crate::journal::Journal for Recorder {
    fn record(&mut self, record: crate::journal::Record<'_>) {
        use crate::journal::Record as R;
        let line = match record {
            R::Session {
                client_id,
                expiry_s,
            } => format!("session {client_id} {expiry_s}"),
            R::SessionEnded { client_id } => format!("ended {client_id}"),
            R::Subscribed {
                client_id, filter, ..
            } => format!("subscribed {client_id} {filter}"),
            R::Unsubscribed { client_id, filter } => format!("unsubscribed {client_id} {filter}"),
            R::Will { client_id, will } => {
                format!("will {client_id} {}", will.map_or("-", |w| &*w.topic))
            }
            R::Stored {
                client_id, message, ..
            } => format!("stored {client_id} {}", message.id),
            R::Released { client_id, id } => format!("released {client_id} {id}"),
            R::Retained { topic, message } => format!("retained {topic} {}", message.is_some()),
        };
        self.0.borrow_mut().push(line);
    }
}

#[test]
fn the_journal_sees_every_change_to_durable_state() {
    let mut b = Broker::new(1);
    let journal = Recorder::default();
    b.shards[0].set_journal(Box::new(journal.clone()));
    let take = || std::mem::take(&mut *journal.0.borrow_mut());
    let (mut passing, _) = b.connect(connect("passing", V5, true));
    b.subscribe(&mut passing, &[("t", opts(QoS::AtLeastOnce))]);
    assert!(
        take().is_empty(),
        "a session that ends with its connection is not recorded"
    );

    let mut c = will_connect("d", Some(60), 100);
    c.clean_start = false;
    let (mut d, _) = b.connect(c.clone());
    assert_eq!(take(), ["session d 100", "will d will"]);
    b.subscribe(&mut d, &[("t", opts(QoS::AtLeastOnce))]);
    assert_eq!(take(), ["subscribed d t"]);
    b.disconnect(&mut d, ReasonCode::Success, None);
    assert_eq!(
        take(),
        ["session d 100", "will d -"],
        "a clean DISCONNECT drops the will"
    );

    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut m = publish("t", b"x", QoS::AtLeastOnce, Some(1));
    m.retain = true;
    b.send(&mut p, Packet::Publish(m));
    let records = take();
    let id = records[1].rsplit(' ').next().unwrap().to_string();
    assert_eq!(
        records,
        ["retained t true".to_string(), format!("stored d {id}")]
    );
    let (mut d, _) = b.connect(c);
    take();
    let got = b.publishes(&mut d);
    b.send(
        &mut d,
        Packet::PubAck(ack(got[0].packet_id.unwrap().get(), ReasonCode::Success)),
    );
    assert_eq!(take(), [format!("released d {id}")]);
    let unsub = Unsubscribe {
        packet_id: pid(2),
        filters: vec!["t".into()],
        user_properties: vec![],
    };
    b.send(&mut d, Packet::Unsubscribe(unsub));
    assert_eq!(take(), ["unsubscribed d t"]);
    b.disconnect(&mut d, ReasonCode::Success, Some(0));
    assert_eq!(
        take(),
        ["ended d"],
        "expiry 0 at DISCONNECT ends the session with the connection"
    );
}

// ----- publish after subscribe, across shards -----

/// A random schedule for the shard interleaving tests (xorshift64*, seeded: a failure repeats).
struct Schedule(u64);

impl Schedule {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Proves the publish-after-subscribe guarantee where the old design broke it: the subscriber's
/// SUBSCRIBE is taken in on one shard and, before that shard's messages to the others move at
/// all, a client of another shard publishes. The subscriber still gets the message, with no
/// SUBACK delay, on 2, 4 and 8 shards.
#[test]
fn publish_right_after_a_subscribe_on_another_shard_is_delivered() {
    for n in [2u16, 4, 8] {
        let mut b = Broker::new(n);
        let (mut sub, _) = b.connect_on(1, connect(&id_on(&b, 1, "s"), V5, true));
        let publishers: Vec<Client> = (0..n)
            .filter(|&s| s != 1)
            .map(|s| {
                b.connect_on(usize::from(s), connect(&id_on(&b, s, "p"), V5, true))
                    .0
            })
            .collect();
        let mut bytes = BytesMut::new();
        subscribe(1, &[("t/+", opts(QoS::AtLeastOnce))]).encode(V5, &mut bytes);
        b.shards[1].input(sub.conn, b.now, &bytes);
        b.collect(&mut sub);
        assert!(
            matches!(&sub.inbox[..], [Packet::SubAck(_)]),
            "the SUBACK leaves at once on {n} shards: {:?}",
            sub.inbox
        );
        sub.inbox.clear();
        // No settling: nothing the subscriber's shard queued for the others has moved.
        for (i, p) in publishers.iter().enumerate() {
            let mut bytes = BytesMut::new();
            let payload = [i as u8];
            Packet::Publish(publish("t/x", &payload, QoS::AtMostOnce, None)).encode(V5, &mut bytes);
            b.shards[p.shard].input(p.conn, b.now, &bytes);
        }
        let got = b.publishes(&mut sub);
        let mut got: Vec<u8> = got.iter().map(|p| p.payload[0]).collect();
        got.sort();
        let want: Vec<u8> = (0..publishers.len() as u8).collect();
        assert_eq!(got, want, "every publisher's message, on {n} shards");
    }
}

/// Proves the guarantee under thousands of random interleavings: subscribes, publishes and the
/// delivery of messages between shards happen in random order (each pair of shards in FIFO
/// order, as the server's channels keep it). Every message published after a subscriber's
/// SUBSCRIBE was taken in reaches it exactly once; messages published before may or may not.
#[test]
fn random_interleavings_keep_publish_after_subscribe() {
    for seed in 1..=300u64 {
        let mut rng = Schedule(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let n = [2u16, 4, 8][rng.below(3)];
        interleaving(n, &mut rng, seed);
    }
}

fn interleaving(n: u16, rng: &mut Schedule, seed: u64) {
    const TOPICS: usize = 3;
    const SUBSCRIBERS: usize = 6;
    let mut b = Broker::new(n);
    let mut clients: Vec<Client> = (0..SUBSCRIBERS + 3)
        .map(|i| {
            let shard = rng.below(usize::from(n)) as u16;
            let id = id_on(&b, shard, &format!("c{i}-"));
            b.connect_on(usize::from(shard), connect(&id, V5, true)).0
        })
        .collect();
    // In flight between shards, per (from, to) pair, oldest first.
    let mut wires: Vec<std::collections::VecDeque<ShardMsg>> =
        (0..n * n).map(|_| Default::default()).collect();
    // The topic each subscriber subscribed to, and the messages it must receive.
    let mut topic_of: Vec<Option<usize>> = vec![None; SUBSCRIBERS];
    let mut owed: Vec<Vec<u16>> = vec![Vec::new(); SUBSCRIBERS];
    let mut next_payload = 0u16;
    for _ in 0..60 {
        match rng.below(4) {
            0 => {
                let s = rng.below(SUBSCRIBERS);
                if topic_of[s].is_none() {
                    let t = rng.below(TOPICS);
                    topic_of[s] = Some(t);
                    let filter = format!("t/{t}");
                    let c = &clients[s];
                    let mut bytes = BytesMut::new();
                    subscribe(1, &[(&filter, opts(QoS::AtMostOnce))]).encode(V5, &mut bytes);
                    b.shards[c.shard].input(c.conn, b.now, &bytes);
                }
            }
            1 | 2 => {
                let p = SUBSCRIBERS + rng.below(3);
                let t = rng.below(TOPICS);
                let payload = next_payload.to_be_bytes();
                next_payload += 1;
                let c = &clients[p];
                let mut bytes = BytesMut::new();
                Packet::Publish(publish(&format!("t/{t}"), &payload, QoS::AtMostOnce, None))
                    .encode(V5, &mut bytes);
                b.shards[c.shard].input(c.conn, b.now, &bytes);
                for s in 0..SUBSCRIBERS {
                    if topic_of[s] == Some(t) {
                        owed[s].push(u16::from_be_bytes(payload));
                    }
                }
            }
            _ => {
                // Move one message between shards, from a random non-empty wire.
                for from in 0..n {
                    let mut out = Vec::new();
                    b.shards[usize::from(from)].take_outbox(&mut out);
                    for (to, msg) in out {
                        wires[usize::from(from * n + to)].push_back(msg);
                    }
                }
                let busy: Vec<usize> = (0..wires.len()).filter(|&w| !wires[w].is_empty()).collect();
                if !busy.is_empty() {
                    let w = busy[rng.below(busy.len())];
                    let msg = wires[w].pop_front().expect("busy");
                    b.shards[w % usize::from(n)].remote(b.now, msg);
                }
            }
        }
    }
    // Whatever is still on the wires arrives, in order.
    for (w, wire) in wires.iter_mut().enumerate() {
        while let Some(msg) = wire.pop_front() {
            b.shards[w % usize::from(n)].remote(b.now, msg);
        }
    }
    for (s, client) in clients.iter_mut().take(SUBSCRIBERS).enumerate() {
        let got: Vec<u16> = b
            .publishes(client)
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
            .collect();
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            got.len(),
            "seed {seed}, {n} shards: duplicates {got:?}"
        );
        for m in &owed[s] {
            assert!(
                got.contains(m),
                "seed {seed}, {n} shards: subscriber {s} missed message {m}; got {got:?}"
            );
        }
    }
}

// ----- a SUBSCRIBE with many filters, in slices -----

fn many_filters(n: usize, bad_at: Option<usize>) -> Packet {
    let filters: Vec<(String, SubscriptionOptions)> = (0..n)
        .map(|i| {
            let text = if Some(i) == bad_at {
                "a/#/b".into()
            } else {
                format!("f/{i}")
            };
            (text, opts(QoS::AtMostOnce))
        })
        .collect();
    let refs: Vec<(&str, SubscriptionOptions)> =
        filters.iter().map(|(f, o)| (f.as_str(), *o)).collect();
    subscribe(7, &refs)
}

/// Proves a SUBSCRIBE with many filters is taken in slices of `SUBSCRIBE_SLICE`: after its
/// bytes arrive nothing is answered yet, a bystander on the same shard is served in between,
/// the subscriber's next packet (a PINGREQ in the same read) waits for the SUBACK, and the
/// SUBACK finally holds one reason code per filter, in order (the over-quota ones 0x97).
#[test]
fn a_many_filter_subscribe_is_taken_in_slices() {
    let n = 4 * super::subscribe::SUBSCRIBE_SLICE + 10;
    let settings = Settings {
        endpoints: vec![EndpointSettings::default()],
        broker: crate::settings::BrokerSettings {
            subscriptions_max: n - 5,
            ..Default::default()
        },
    };
    let mut b = Broker::with(1, settings);
    let (mut hostile, _) = b.connect(connect("hostile", V5, true));
    let (mut bystander, _) = b.connect(connect("bystander", V5, true));
    b.subscribe(&mut bystander, &[("echo", opts(QoS::AtMostOnce))]);
    let mut bytes = BytesMut::new();
    many_filters(n, None).encode(V5, &mut bytes);
    Packet::PingReq.encode(V5, &mut bytes);
    b.shards[0].input(hostile.conn, b.now, &bytes);
    assert!(b.shards[0].has_work(), "more than one slice left");
    assert!(!b.shards[0].wants_input(hostile.conn), "its input waits");
    b.collect(&mut hostile);
    assert!(hostile.inbox.is_empty(), "no answer before the last slice");
    let mut bytes = BytesMut::new();
    Packet::Publish(publish("echo", b"hi", QoS::AtMostOnce, None)).encode(V5, &mut bytes);
    b.shards[0].input(bystander.conn, b.now, &bytes);
    b.collect(&mut bystander);
    assert!(
        matches!(&bystander.inbox[..], [Packet::Publish(p)] if &p.payload[..] == b"hi"),
        "the bystander is served between slices"
    );
    let mut slices = 0;
    let mut resumed = Vec::new();
    while b.shards[0].has_work() {
        assert!(resumed.is_empty(), "resumed only at the end");
        b.shards[0].work(b.now, &mut resumed);
        slices += 1;
    }
    assert_eq!(resumed, [hostile.conn]);
    // 4,106 filters checked, then 4,106 applied: 8,212 steps of which 1,024 ran at input.
    assert_eq!(slices, 8);
    let got = b.received(&mut hostile);
    match &got[..] {
        [Packet::SubAck(ack), Packet::PingResp] => {
            assert_eq!(ack.reason_codes.len(), n);
            assert!(ack.reason_codes[..n - 5]
                .iter()
                .all(|&c| c == ReasonCode::Success));
            assert!(ack.reason_codes[n - 5..]
                .iter()
                .all(|&c| c == ReasonCode::QuotaExceeded));
        }
        other => panic!("expected SUBACK then PINGRESP, got {} packets", other.len()),
    }
    assert!(b.shards[0].wants_input(hostile.conn));
}

/// Proves the whole SUBSCRIBE is checked before any filter is applied: a malformed filter near
/// the end of a many-slice SUBSCRIBE disconnects the client (0x82) and leaves its persistent
/// session without any of the packet's subscriptions.
#[test]
fn a_malformed_filter_late_in_a_sliced_subscribe_applies_nothing() {
    let n = 3 * super::subscribe::SUBSCRIBE_SLICE;
    let mut b = Broker::new(1);
    let mut c = connect("late", V5, false);
    c.properties.session_expiry_interval_s = Some(60);
    let (mut client, _) = b.connect(c.clone());
    b.send(&mut client, many_filters(n, Some(n - 2)));
    match &b.received(&mut client)[..] {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert!(client.closed);
    let (mut again, connack) = b.connect(c);
    assert!(connack.session_present);
    let (mut publisher, _) = b.connect(connect("p", V5, true));
    b.send(
        &mut publisher,
        Packet::Publish(publish("f/0", b"x", QoS::AtMostOnce, None)),
    );
    assert!(
        b.publishes(&mut again).is_empty(),
        "f/0 was never subscribed"
    );
}

/// Bounded work per packet: subscription tables, packet size before CONNECT, packet deadlines.
mod bounded;
