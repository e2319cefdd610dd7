//! Shared subscriptions: one member per message across shards, both spellings, members that
//! leave.

use super::*;

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
