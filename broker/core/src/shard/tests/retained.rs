//! The retained store: set, replace and clear across shards, Retain Handling and Retain As
//! Published, updates racing between shards, expiry.

use super::*;

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
