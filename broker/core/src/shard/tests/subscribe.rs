//! Subscriptions: what a filter matches, one copy per session, No Local, and what SUBACK and
//! UNSUBACK answer.

use super::*;

#[test]
fn dollar_topics_need_an_explicit_filter() {
    let mut b = Broker::new(1);
    let (mut s, _) = b.connect(connect("s", V311, true));
    let (mut p, _) = b.connect(connect("p", V311, true));
    b.subscribe(
        &mut s,
        &[("#", opts(QoS::AtMostOnce)), ("+/x", opts(QoS::AtMostOnce))],
    );
    b.send(
        &mut p,
        Packet::Publish(publish("$sys/x", b"hidden", QoS::AtMostOnce, None)),
    );
    assert!(b.publishes(&mut s).is_empty(), "[MQTT-4.7.2-1]");
    b.subscribe(&mut s, &[("$sys/#", opts(QoS::AtMostOnce))]);
    b.send(
        &mut p,
        Packet::Publish(publish("$sys/x", b"seen", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut s)), [b"seen"]);
}

#[test]
fn overlapping_subscriptions_give_one_copy_with_every_identifier() {
    let mut b = Broker::new(1);
    let (mut s, _) = b.connect(connect("s", V5, true));
    let (mut p, _) = b.connect(connect("p", V5, true));
    for (id, filter, qos) in [(1, "a/+", QoS::AtMostOnce), (2, "a/#", QoS::AtLeastOnce)] {
        let mut packet = Subscribe {
            packet_id: pid(id),
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                options: opts(qos),
            }],
            properties: SubscribeProperties::default(),
        };
        packet.properties.subscription_identifier = NonZeroU32::new(u32::from(id) * 10);
        b.send(&mut s, Packet::Subscribe(packet));
    }
    b.received(&mut s);
    b.send(
        &mut p,
        Packet::Publish(publish("a/b", b"x", QoS::ExactlyOnce, Some(1))),
    );
    let got = b.publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].qos,
        QoS::AtLeastOnce,
        "the highest of the matching subscriptions"
    );
    let mut ids: Vec<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort();
    assert_eq!(ids, [10, 20]);
}

#[test]
fn no_local_suppresses_own_messages() {
    let mut b = Broker::new(1);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    b.subscribe(&mut c, &[("t", no_local)]);
    b.send(
        &mut c,
        Packet::Publish(publish("t", b"mine", QoS::AtMostOnce, None)),
    );
    assert!(b.publishes(&mut c).is_empty());
    let (mut other, _) = b.connect(connect("o", V5, true));
    b.send(
        &mut other,
        Packet::Publish(publish("t", b"theirs", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut c)), [b"theirs"]);
}

#[test]
fn filter_limits_and_subscription_quota_answer_in_suback() {
    let mut settings = demo_settings();
    settings.broker.subscriptions_max = 2;
    settings.broker.topic_levels_max = 3;
    let mut b = Broker::with(1, settings);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let filters = [
        ("a/b/c/d", opts(QoS::AtMostOnce)),
        ("a", opts(QoS::AtLeastOnce)),
        ("b", opts(QoS::AtMostOnce)),
        ("c", opts(QoS::AtMostOnce)),
    ];
    let codes = b.subscribe(&mut c, &filters);
    let expected = [
        ReasonCode::TopicFilterInvalid,
        ReasonCode::GrantedQoS1,
        ReasonCode::Success,
        ReasonCode::QuotaExceeded,
    ];
    assert_eq!(
        codes, expected,
        "too deep for this server: 0x8F; over quota: 0x97"
    );
    let codes = b.subscribe(&mut c, &[("a", opts(QoS::AtMostOnce))]);
    assert_eq!(
        codes,
        [ReasonCode::Success],
        "replacing an existing subscription is within quota"
    );
}

#[test]
fn malformed_filters_are_protocol_errors() {
    for (filter, options) in [
        ("a/#/b", opts(QoS::AtMostOnce)),
        ("a+", opts(QoS::AtMostOnce)),
        ("$share/g", opts(QoS::AtMostOnce)),
        (
            "$share/g/t",
            SubscriptionOptions {
                no_local: true,
                ..opts(QoS::AtMostOnce)
            },
        ),
    ] {
        let mut b = Broker::new(1);
        let (mut c, _) = b.connect(connect("c", V5, true));
        b.send(
            &mut c,
            subscribe(1, &[("ok", opts(QoS::AtMostOnce)), (filter, options)]),
        );
        let packets = std::mem::take(&mut c.inbox);
        assert!(
            matches!(&packets[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
            "{filter}: {packets:?}"
        );
        assert!(c.closed, "{filter}");
        assert!(
            b.shards[0].subs.is_empty(),
            "{filter}: nothing of the packet was applied"
        );
    }
}

#[test]
fn unsubscribe_reports_what_existed() {
    let mut b = Broker::new(2);
    let (mut c, _) = b.connect(connect("c", V5, true));
    let (mut p, _) = b.connect(connect(&id_on(&b, 1, "p"), V5, true));
    b.subscribe(&mut c, &[("t", opts(QoS::AtMostOnce))]);
    let unsub = Unsubscribe {
        packet_id: pid(3),
        filters: vec!["t".into(), "u".into()],
        user_properties: vec![],
    };
    b.send(&mut c, Packet::Unsubscribe(unsub));
    let packets = b.received(&mut c);
    let [Packet::UnsubAck(ack)] = &packets[..] else {
        panic!("{packets:?}")
    };
    assert_eq!(
        ack.reason_codes,
        [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert!(b.publishes(&mut c).is_empty());
    let acks = b.received(&mut p);
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NoMatchingSubscribers)
    );
}
