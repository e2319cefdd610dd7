//! MQTT 5 features: topic aliases both ways, the client's Maximum Packet Size (also on resend),
//! message expiry, properties passed through.

use super::*;

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
