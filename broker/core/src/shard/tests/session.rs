//! Sessions: redelivery to a persistent session, expiry, clean start, timers, takeover.

use super::*;

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
