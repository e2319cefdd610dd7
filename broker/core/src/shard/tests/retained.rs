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

/// Proves that a retained message reaches every subscriber of another shard exactly once,
/// whenever it subscribed, and that an acknowledged one is in every shard's replica. A v3.1.1
/// publisher (whose PUBACK says nothing of subscribers) publishes a retained QoS 1 message on
/// shard 0. Clients that subscribe on the other shards before the messages between shards
/// move find nothing in their replica, and the publisher has no PUBACK yet; when the update
/// arrives they get it live. Once the PUBACK has left, a subscriber on any shard finds it
/// retained. (The push gateway's walk-through caught the old behaviour: a device
/// registration published while the gateway subscribed on the other shard reached neither
/// the gateway's subscription nor, in time for it, that shard's replica.)
#[test]
fn a_retained_message_reaches_every_shard_and_its_subscribers_once() {
    for n in [2u16, 4] {
        let mut b = Broker::new(n);
        let (mut p, _) = b.connect_on(0, connect(&id_on(&b, 0, "p"), V311, true));
        let mut early: Vec<Client> = (1..n)
            .map(|s| {
                b.connect_on(usize::from(s), connect(&id_on(&b, s, "e"), V311, true))
                    .0
            })
            .collect();
        let mut m = publish("device/a", b"token", QoS::AtLeastOnce, Some(1));
        m.retain = true;
        let mut bytes = BytesMut::new();
        Packet::Publish(m).encode(V311, &mut bytes);
        b.shards[0].input(p.conn, b.now, &bytes);
        b.collect(&mut p);
        assert!(
            p.inbox.is_empty(),
            "no PUBACK before the other shards report, on {n} shards"
        );
        for s in &mut early {
            let mut bytes = BytesMut::new();
            subscribe(1, &[("device/+", opts(QoS::AtLeastOnce))]).encode(V311, &mut bytes);
            b.shards[s.shard].input(s.conn, b.now, &bytes);
            b.collect(s);
            assert!(
                matches!(&s.inbox[..], [Packet::SubAck(_)]),
                "shard {} has not heard of it yet: {:?}",
                s.shard,
                s.inbox
            );
        }
        b.settle(&mut [&mut p]);
        assert!(
            matches!(&p.inbox[..], [Packet::PubAck(_)]),
            "acknowledged once every shard has it: {:?}",
            p.inbox
        );
        for s in &mut early {
            let got = b.publishes(s);
            assert_eq!(
                payloads(&got),
                [b"token"],
                "once, on shard {} of {n}",
                s.shard
            );
            assert!(!got[0].retain, "live, as published after the SUBSCRIBE");
        }
        for s in 1..n {
            let (mut late, _) =
                b.connect_on(usize::from(s), connect(&id_on(&b, s, "l"), V311, true));
            b.subscribe(&mut late, &[("device/+", opts(QoS::AtLeastOnce))]);
            let got = b.publishes(&mut late);
            assert_eq!(payloads(&got), [b"token"], "shard {s} of {n}");
            assert!(got[0].retain);
        }
    }
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
