//! PUBLISH both ways: the QoS flows, Receive Maximum in both directions, acknowledgements in
//! PUBLISH order (also while other shards answer), and one encoding copied to every subscriber.

use super::*;

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
