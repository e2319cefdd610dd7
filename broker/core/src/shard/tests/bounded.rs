//! Bounded work per packet: a session's subscriptions are found by their text (not by a walk),
//! a SUBSCRIBE with many filters is taken in slices, a peer that has not completed CONNECT may
//! send only a small packet, and a packet that has started must arrive whole within
//! `BrokerSettings::packet_timeout_s`.

use super::*;

fn with_subscriptions_max(max: usize) -> Broker {
    let mut settings = demo_settings();
    settings.broker.subscriptions_max = max;
    Broker::with(1, settings)
}

/// Proves the quota counts distinct filters, so a session at its limit may still replace one
/// it holds (the hash lookup must find it) but not add another, and an unsubscribe frees room.
#[test]
fn a_session_at_its_limit_replaces_but_does_not_add() {
    let mut b = with_subscriptions_max(3);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let q1 = opts(QoS::AtLeastOnce);
    let codes = b.subscribe(&mut c, &[("a", q1), ("b", q1), ("c/+", q1)]);
    assert_eq!(codes, [ReasonCode::GrantedQoS1; 3]);
    let codes = b.subscribe(&mut c, &[("a", opts(QoS::ExactlyOnce)), ("d", q1)]);
    assert_eq!(codes, [ReasonCode::GrantedQoS2, ReasonCode::QuotaExceeded]);
    let unsub = Unsubscribe {
        packet_id: pid(2),
        filters: vec!["b".into(), "b".into()],
        user_properties: vec![],
    };
    b.send(&mut c, Packet::Unsubscribe(unsub));
    let packets = b.received(&mut c);
    assert!(
        matches!(&packets[..], [Packet::UnsubAck(a)]
            if a.reason_codes == [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]),
        "{packets:?}"
    );
    assert_eq!(b.subscribe(&mut c, &[("d", q1)]), [ReasonCode::GrantedQoS1]);
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.send(
        &mut p,
        Packet::Publish(publish("a", b"x", QoS::ExactlyOnce, Some(1))),
    );
    let got = b.publishes(&mut c);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].qos,
        QoS::ExactlyOnce,
        "the replacement's QoS is in force"
    );
}

/// Proves a SUBSCRIBE of 60,000 filters, with repeats, is answered filter by filter against the
/// session's table: new filters up to the limit granted, repeats of held filters granted (they
/// replace), new filters past the limit refused, and each subscription delivers once.
#[test]
fn a_subscribe_of_many_filters_is_answered_filter_by_filter() {
    let mut b = with_subscriptions_max(40_000);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let names: Vec<String> = (0..50_000).map(|i| format!("t/{i}")).collect();
    let q0 = opts(QoS::AtMostOnce);
    let mut filters: Vec<(&str, SubscriptionOptions)> =
        names.iter().map(|n| (n.as_str(), q0)).collect();
    filters.extend(names[..10_000].iter().map(|n| (n.as_str(), q0)));
    let codes = b.subscribe(&mut c, &filters);
    assert_eq!(codes.len(), 60_000);
    assert!(codes[..40_000].iter().all(|&r| r == ReasonCode::Success));
    assert!(codes[40_000..50_000]
        .iter()
        .all(|&r| r == ReasonCode::QuotaExceeded));
    assert!(codes[50_000..].iter().all(|&r| r == ReasonCode::Success));
    let session = b.shards[0].conns[c.conn as usize].session.unwrap();
    assert_eq!(
        b.shards[0].sessions[session as usize].subscriptions.len(),
        40_000
    );
    let (mut p, _) = b.connect(connect("p", V5, true));
    for topic in ["t/0", "t/39999", "t/40000"] {
        b.send(
            &mut p,
            Packet::Publish(publish(topic, b"x", QoS::AtMostOnce, None)),
        );
    }
    let topics: Vec<_> = b
        .publishes(&mut c)
        .iter()
        .map(|m| m.topic.clone())
        .collect();
    assert_eq!(topics, ["t/0", "t/39999"]);
}

/// Proves a filter that is both malformed and over the broker's limits is a protocol error for
/// the whole SUBSCRIBE (the connection closes), and that none of the packet's filters was
/// applied to the session, which outlives the connection; a filter only over the limits is
/// refused alone (0x80 in 3.1.1).
#[test]
fn a_malformed_filter_over_the_limits_is_still_malformed() {
    let mut b = Broker::new(1);
    let (mut c, _) = b.connect(connect("c", V311, false));
    let deep = format!("{}x", "x/".repeat(40));
    let q0 = opts(QoS::AtMostOnce);
    let codes = b.subscribe(&mut c, &[(&deep, q0), ("ok", q0)]);
    assert_eq!(codes, [ReasonCode::UnspecifiedError, ReasonCode::Success]);
    let deep_and_bad = format!("{}a#", "x/".repeat(40));
    b.send(&mut c, subscribe(2, &[("fine", q0), (&deep_and_bad, q0)]));
    assert!(b.received(&mut c).is_empty(), "no SUBACK");
    assert!(c.closed);
    let session = b.shards[0].find_session("c").expect("a persistent session");
    let subs = &b.shards[0].sessions[session as usize].subscriptions;
    assert!(subs.contains("ok") && !subs.contains("fine"));
}

/// A CONNECT with a password (a token, say), and a will with user properties, about `bytes`
/// long in all (an MQTT string or binary field holds at most 65,535 bytes).
fn big_connect(id: &str, version: ProtocolVersion, bytes: usize) -> Packet {
    let mut c = connect(id, version, true);
    c.username = Some("user".into());
    c.password = Some(Bytes::from(vec![b'p'; bytes / 2]));
    let mut properties = MessageProperties::default();
    if version == V5 {
        properties.user_properties = vec![("k".into(), "v".repeat(200).into())];
    }
    c.will = Some(Will {
        topic: "will".into(),
        payload: Bytes::from(vec![b'w'; bytes / 2 - 300]),
        qos: QoS::AtLeastOnce,
        retain: false,
        delay_interval_s: None,
        properties,
    });
    Packet::Connect(Box::new(c))
}

/// Proves that before CONNECT completes a packet may have only `connect_packet_size_max`
/// bytes: a v5 CONNECT over it is answered CONNACK 0x95 (Packet too large) and closed, a
/// v3.1.1 one is closed (3.1.1 has no such code), each is counted; a CONNECT with a will and
/// properties under it connects, and after it the endpoint's `packet_size_max` applies.
#[test]
fn before_connect_only_a_small_packet_is_accepted() {
    let mut b = Broker::new(1);
    assert_eq!(
        b.shards[0].settings.endpoints[0].connect_packet_size_max,
        64 * 1024
    );
    for version in [V5, V311] {
        let mut c = b.open_on(0, version);
        b.send(&mut c, big_connect("big", version, 70 * 1024));
        let packets = b.received(&mut c);
        if version == V5 {
            assert!(
                matches!(&packets[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::PacketTooLarge),
                "{packets:?}"
            );
        } else {
            assert!(packets.is_empty(), "{packets:?}");
        }
        assert!(c.closed);
    }
    assert_eq!(b.shards[0].stats.connects_too_large, 2);
    let mut c = b.open_on(0, V5);
    b.send(&mut c, big_connect("fits", V5, 60 * 1024));
    let packets = b.received(&mut c);
    assert!(
        matches!(&packets[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::Success),
        "{packets:?}"
    );
    b.subscribe(&mut c, &[("t", opts(QoS::AtMostOnce))]);
    let large = vec![b'p'; 1024 * 1024];
    b.send(
        &mut c,
        Packet::Publish(publish("t", &large, QoS::AtMostOnce, None)),
    );
    assert_eq!(b.publishes(&mut c)[0].payload.len(), large.len());
    assert_eq!(b.shards[0].stats.connects_too_large, 2);
}

/// Proves the limit before CONNECT is checked from the fixed header: a peer that declares a
/// 1 MB CONNECT is refused on its first five bytes, before it sends (or the broker holds) any
/// of the body.
#[test]
fn a_large_connect_is_refused_from_its_header() {
    let mut b = Broker::new(1);
    let mut c = b.open_on(0, V5);
    // CONNECT, remaining length 1,048,576 (0x80 0x80 0x40), then the protocol name and level 5.
    b.send_bytes(
        &mut c,
        &[0x10, 0x80, 0x80, 0x40, 0, 4, b'M', b'Q', b'T', b'T', 5],
    );
    let packets = b.received(&mut c);
    assert!(
        matches!(&packets[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::PacketTooLarge),
        "{packets:?}"
    );
    assert!(c.closed);
    assert_eq!(b.shards[0].stats.connects_too_large, 1);
}

fn with_packet_timeout(seconds: u16) -> Broker {
    let mut settings = demo_settings();
    settings.broker.packet_timeout_s = seconds;
    Broker::with(1, settings)
}

/// The bytes of a QoS 0 PUBLISH to `t` with a payload of `len` bytes.
fn publish_bytes(version: ProtocolVersion, len: usize) -> BytesMut {
    let mut bytes = BytesMut::new();
    Packet::Publish(publish("t", &vec![b'x'; len], QoS::AtMostOnce, None))
        .encode(version, &mut bytes);
    bytes
}

/// Proves a packet that has begun must be whole within `packet_timeout_s` of its first byte:
/// a 4 MB PUBLISH trickled at 100 bytes a second by a client without keep alive is cut with
/// DISCONNECT 0x8D (v5) on the first tick past the bound, and not before; a v3.1.1 client is
/// closed. Both are counted.
#[test]
fn a_trickled_packet_is_cut_at_the_packet_timeout() {
    for version in [V5, V311] {
        let mut b = with_packet_timeout(30);
        let (mut c, _) = b.connect(connect("trickler", version, true));
        let bytes = publish_bytes(version, 4_000_000);
        let mut sent = 0;
        for _ in 0..30 {
            b.send_bytes(&mut c, &bytes[sent..sent + 100]);
            sent += 100;
            b.advance(1.0);
            assert!(
                !c.closed && b.received(&mut c).is_empty(),
                "cut at {sent} bytes"
            );
        }
        b.send_bytes(&mut c, &bytes[sent..sent + 100]);
        b.advance(1.0);
        let packets = b.received(&mut c);
        assert!(c.closed, "{version:?}: still open after 31 s");
        if version == V5 {
            assert!(
                matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout),
                "{packets:?}"
            );
        } else {
            assert!(packets.is_empty(), "{packets:?}");
        }
        assert_eq!(b.shards[0].stats.packets_timed_out, 1);
    }
}

/// Proves the bound is per packet and counts from the packet's first byte: a client without
/// keep alive that idles for longer than the bound, then sends packets that each take 20 of
/// the 30 seconds allowed, for four minutes in all, is never cut, and every message arrives.
#[test]
fn a_slow_but_progressing_client_is_not_cut() {
    let mut b = with_packet_timeout(30);
    let (mut sub, _) = b.connect(connect("sub", V5, true));
    b.subscribe(&mut sub, &[("t", opts(QoS::AtMostOnce))]);
    let (mut c, _) = b.connect(connect("slow", V5, true));
    b.advance(100.0);
    let bytes = publish_bytes(V5, 2_000);
    let chunk = bytes.len().div_ceil(20);
    for _ in 0..12 {
        for part in bytes.chunks(chunk) {
            b.send_bytes(&mut c, part);
            b.advance(1.0);
        }
        assert!(!c.closed);
    }
    assert_eq!(b.publishes(&mut sub).len(), 12);
    assert_eq!(b.shards[0].stats.packets_timed_out, 0);
}

/// Proves that bytes left over from a completed packet start the clock of the next one anew:
/// a read that finishes one packet and begins the next does not carry the first one's start.
#[test]
fn the_next_packet_starts_its_own_clock() {
    let mut b = with_packet_timeout(30);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let first = publish_bytes(V5, 1_000);
    let second = publish_bytes(V5, 1_000);
    b.send_bytes(&mut c, &first[..10]);
    b.advance(25.0);
    let mut read = first[10..].to_vec();
    read.extend_from_slice(&second[..10]);
    b.send_bytes(&mut c, &read);
    b.advance(25.0);
    assert!(!c.closed, "the second packet began 25 s ago, not 50");
    b.send_bytes(&mut c, &second[10..]);
    b.advance(40.0);
    assert!(!c.closed, "nothing is pending");
    assert_eq!(b.shards[0].stats.packets_timed_out, 0);
}

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
    let n = 4 * crate::shard::SUBSCRIBE_SLICE + 10;
    let mut settings = demo_settings();
    settings.broker.subscriptions_max = n - 5;
    let mut b = Broker::with(1, settings);
    let (mut hostile, _) = b.connect(connect("hostile", V5, true));
    let (mut bystander, _) = b.connect(connect("bystander", V5, true));
    b.subscribe(&mut bystander, &[("echo", opts(QoS::AtMostOnce))]);
    let mut bytes = BytesMut::new();
    many_filters(n, None).encode(V5, &mut bytes);
    Packet::PingReq.encode(V5, &mut bytes);
    b.shards[0].input(hostile.conn, b.now, &bytes);
    assert_eq!(
        b.shards[0].next_work(b.now),
        Some(b.now),
        "more than one slice left"
    );
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
    while b.shards[0].next_work(b.now).is_some() {
        assert!(resumed.is_empty(), "resumed only at the end");
        b.shards[0].work(b.now, &mut resumed);
        slices += 1;
    }
    assert_eq!(resumed, [hostile.conn]);
    // n filters checked, then n applied: 8 slices and 20 steps, of which one slice ran at input.
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
    let n = 3 * crate::shard::SUBSCRIBE_SLICE;
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
