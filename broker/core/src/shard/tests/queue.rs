//! Session queue limits: `MaxMessages` with `RejectNewMessages` or `DiscardOldMessages`,
//! expired messages in an offline queue, and what a v5 publisher is told of a full queue.

use super::*;

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
