//! Bounded work per packet: a session's subscriptions are found by their text (not by a walk),
//! a peer that has not completed CONNECT may send only a small packet, and a packet that has
//! started must arrive whole within `BrokerSettings::packet_timeout_s`.

use super::*;

fn with_subscriptions_max(max: usize) -> Broker {
    let mut settings = Settings {
        endpoints: vec![EndpointSettings::default()],
        ..Settings::default()
    };
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
