//! Connections: CONNECT and its answer, the shard a client id belongs to, the first packet,
//! malformed and oversize input, and what an idle connection costs.

use super::*;

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
    let mut settings = demo_settings();
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

/// Every idle connection costs its Connection and Session (plus the server's table entry); a
/// field added carelessly here is paid a million times. Raise these bounds knowingly.
#[test]
fn per_connection_state_stays_small() {
    // 112: the identity a transport establishes (TLS, the client certificate) took the last
    // free bytes of 104.
    // 136: what monitoring shows of a connection (Amlen's ConnectTime, ReadMsg, WriteMsg: a
    // u32 of seconds and two u64 counters) and whether it ever connected (BadConnections).
    assert!(std::mem::size_of::<crate::conn::Connection>() <= 136);
    // 96: a session's subscriptions became one boxed table (a word) instead of a `Vec`.
    // 104: the user who holds it (a shared `Principal`, one word), which policies and takeover
    // need for as long as the session lives.
    assert!(std::mem::size_of::<crate::session::Session>() <= 104);
    assert!(
        std::mem::size_of::<crate::outbuf::OutBuf>() <= 8,
        "an idle OutBuf is one word"
    );
    assert!(
        std::mem::size_of::<crate::conn::InBuf>() <= 8,
        "an idle InBuf is one word"
    );
}

/// Proves the free `owner_of` (which the server uses before shards exist) agrees with every
/// shard's.
#[test]
fn owners_agree() {
    let b = Broker::new(5);
    for i in 0..200 {
        let id = format!("client-{i}");
        assert_eq!(super::super::owner_of(&id, 5), b.shards[3].owner_of(&id));
    }
}
