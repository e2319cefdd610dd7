//! Policies: who may connect, publish and subscribe.

use super::*;

#[test]
fn policies_decide_who_connects_publishes_and_subscribes() {
    let mut endpoint = EndpointSettings::default();
    endpoint.connection_rules[0].client_id = IdFilter::parse("dev-*");
    let rule = &mut endpoint.topic_rules[0];
    rule.topic = TopicPattern::parse("devices/${ClientID}/*").unwrap();
    rule.subscribe = false;
    let mut b = Broker::with(
        1,
        Settings {
            endpoints: vec![endpoint],
            ..Settings::default()
        },
    );
    let (_, refused) = b.connect(connect("app", V5, true));
    assert_eq!(refused.reason_code, ReasonCode::NotAuthorized);
    let (mut d, _) = b.connect(connect("dev-1", V5, true));
    b.send(
        &mut d,
        Packet::Publish(publish("devices/dev-2/x", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert!(
        matches!(&b.received(&mut d)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NotAuthorized)
    );
    b.send(
        &mut d,
        Packet::Publish(publish("devices/dev-1/x", b"x", QoS::AtLeastOnce, Some(2))),
    );
    assert!(
        matches!(&b.received(&mut d)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NoMatchingSubscribers)
    );
    assert_eq!(
        b.subscribe(&mut d, &[("devices/dev-1/x", opts(QoS::AtMostOnce))]),
        [ReasonCode::NotAuthorized]
    );
    let (mut v3, _) = b.connect(connect("dev-3", V311, true));
    b.send(
        &mut v3,
        Packet::Publish(publish("elsewhere", b"x", QoS::AtMostOnce, None)),
    );
    assert!(v3.closed, "[MQTT-3.3.5-2] a v3 client cannot be told");
}
