//! Policies on the shard: who connects, publishes, subscribes and shares, wills and retained
//! messages authorised like any publish, `$SYS`, and a resumed session after a policy change.

use super::*;
use crate::policy::{ClientFilters, Pattern, PatternKind, SubscriptionRule, TopicRule};

fn name(text: &str) -> Option<Pattern> {
    Some(Pattern::parse(text, PatternKind::Name).unwrap())
}

fn topic_rule(name: &str, topic: &str, publish: bool, subscribe: bool) -> TopicRule {
    TopicRule {
        name: name.into(),
        filters: ClientFilters::default(),
        topic: Pattern::parse(topic, PatternKind::Topic).unwrap(),
        publish,
        subscribe,
        queue_messages_max: 5000,
        queue_behavior: QueueBehavior::RejectNewMessages,
        message_ttl_max_s: None,
        disconnected_client_notification: false,
    }
}

fn with_topics(rules: Vec<TopicRule>) -> Settings {
    Settings {
        endpoints: vec![EndpointSettings {
            topic_rules: rules,
            ..EndpointSettings::default()
        }],
        ..Settings::default()
    }
}

/// A broker of `n` shards whose endpoints authenticate, and whose CONNECTs with the user name
/// of one of `users` are accepted as that user.
fn broker_with_users(n: u16, mut settings: Settings, users: &[Principal]) -> Broker {
    for endpoint in &mut settings.endpoints {
        endpoint.authenticate = true;
    }
    let mut b = Broker::with(n, settings);
    b.users = users.iter().cloned().map(Arc::new).collect();
    b
}

fn as_user(id: &str, version: ProtocolVersion, user: &str) -> Connect {
    let mut c = connect(id, version, true);
    c.username = Some(user.into());
    c
}

fn puback_reason(b: &mut Broker, c: &mut Client) -> Vec<ReasonCode> {
    b.received(c)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) | Packet::PubRec(a) => Some(a.reason_code),
            _ => None,
        })
        .collect()
}

#[test]
fn policies_decide_who_connects_publishes_and_subscribes() {
    let mut endpoint = EndpointSettings::default();
    endpoint.connection_rules[0].filters.client_id = name("dev-*");
    let rule = &mut endpoint.topic_rules[0];
    rule.topic = Pattern::parse("devices/${ClientID}/*", PatternKind::Topic).unwrap();
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
    assert_eq!(puback_reason(&mut b, &mut d), [ReasonCode::NotAuthorized]);
    b.send(
        &mut d,
        Packet::Publish(publish("devices/dev-2/x", b"x", QoS::ExactlyOnce, Some(3))),
    );
    assert_eq!(
        puback_reason(&mut b, &mut d),
        [ReasonCode::NotAuthorized],
        "PUBREC 0x87 ends a QoS 2 flow"
    );
    b.send(
        &mut d,
        Packet::Publish(publish("devices/dev-1/x", b"x", QoS::AtLeastOnce, Some(2))),
    );
    assert_eq!(
        puback_reason(&mut b, &mut d),
        [ReasonCode::NoMatchingSubscribers]
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

/// Proves `${UserID}` gives each authenticated user their own topics, on one shard and across
/// three: alice publishes and subscribes under `APP/alice`, not under `APP/bob`, and a client
/// without a user is not let in at all.
#[test]
fn user_ids_are_substituted_for_authenticated_clients() {
    for n in [1, 3] {
        let settings = with_topics(vec![topic_rule("own", "APP/${UserID}*", true, true)]);
        let users = [Principal::new("alice", []), Principal::new("bob", [])];
        let mut b = broker_with_users(n, settings, &users);
        let (mut alice, ok) = b.connect(as_user("a1", V5, "alice"));
        assert_eq!(ok.reason_code, ReasonCode::Success);
        assert_eq!(
            b.subscribe(
                &mut alice,
                &[
                    ("APP/alice/#", opts(QoS::AtLeastOnce)),
                    ("APP/bob/#", opts(QoS::AtLeastOnce))
                ]
            ),
            [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
        );
        let (mut bob, _) = b.connect(as_user("b1", V5, "bob"));
        b.send(
            &mut bob,
            Packet::Publish(publish("APP/alice/x", b"x", QoS::AtLeastOnce, Some(1))),
        );
        assert_eq!(puback_reason(&mut b, &mut bob), [ReasonCode::NotAuthorized]);
        b.send(
            &mut bob,
            Packet::Publish(publish("APP/bob/x", b"x", QoS::AtLeastOnce, Some(2))),
        );
        assert_eq!(
            puback_reason(&mut b, &mut bob),
            [ReasonCode::NoMatchingSubscribers]
        );
        let (_, anonymous) = b.connect(connect("anon", V5, true));
        assert_eq!(
            anonymous.reason_code,
            ReasonCode::BadUserNameOrPassword,
            "where users authenticate, a client without one is not let in"
        );
        assert!(
            b.publishes(&mut alice).is_empty(),
            "nothing of bob's reached alice"
        );
    }
}

/// Proves a subscription is authorised as a subset of what the policies allow: `d/a/#` also
/// matches `d/a`, which `d/a/*` does not allow (v5 0x87, v3 0x80); `d/a/+` is granted.
#[test]
fn filters_reaching_beyond_the_policy_are_refused() {
    let mut b = Broker::with(
        1,
        with_topics(vec![topic_rule("tree", "d/a/*", true, true)]),
    );
    let (mut v5, _) = b.connect(connect("c5", V5, true));
    assert_eq!(
        b.subscribe(
            &mut v5,
            &[
                ("d/a/#", opts(QoS::AtMostOnce)),
                ("d/a/+", opts(QoS::AtMostOnce)),
                ("#", opts(QoS::AtMostOnce))
            ]
        ),
        [
            ReasonCode::NotAuthorized,
            ReasonCode::Success,
            ReasonCode::NotAuthorized
        ]
    );
    let (mut v3, _) = b.connect(connect("c3", V311, true));
    assert_eq!(
        b.subscribe(&mut v3, &[("d/a/#", opts(QoS::AtMostOnce))]),
        [ReasonCode::UnspecifiedError],
        "v3 SUBACK 0x80"
    );
}

/// A v5 CONNECT with a will on `topic`, retained or not.
fn with_will(id: &str, version: ProtocolVersion, topic: &str, retain: bool) -> Connect {
    let mut c = connect(id, version, true);
    c.will = Some(Will {
        topic: topic.into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain,
        delay_interval_s: None,
        properties: MessageProperties::default(),
    });
    c
}

/// Proves a will is authorised like a publish when the client connects: on a topic the client
/// may not publish to, or on `$SYS`, the CONNECT is refused (v5 0x87, v3 return code 5), so it
/// can never be routed there later; on an allowed topic it connects.
#[test]
fn wills_on_forbidden_topics_refuse_the_connect() {
    let settings = with_topics(vec![topic_rule("own", "status/${ClientID}", true, false)]);
    let mut b = Broker::with(2, settings);
    for version in [V5, V311] {
        let (_, refused) = b.connect(with_will("w", version, "status/other", false));
        assert_eq!(
            refused.reason_code,
            ReasonCode::NotAuthorized,
            "{version:?}"
        );
        let (_, sys) = b.connect(with_will("w", version, "$SYS/broker/down", true));
        assert_eq!(sys.reason_code, ReasonCode::NotAuthorized, "{version:?}");
        let (_, fine) = b.connect(with_will("w", version, "status/w", true));
        assert_eq!(fine.reason_code, ReasonCode::Success, "{version:?}");
    }
}

/// Proves a retained PUBLISH is authorised like any other: refused on a forbidden topic and
/// not stored, so a later subscriber allowed there gets nothing.
#[test]
fn retained_messages_on_forbidden_topics_are_not_stored() {
    let rules = vec![
        topic_rule("read", "*", false, true),
        topic_rule("own", "state/${ClientID}", true, false),
    ];
    let mut b = Broker::with(2, with_topics(rules));
    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut m = publish("state/other", b"forged", QoS::AtLeastOnce, Some(1));
    m.retain = true;
    b.send(&mut p, Packet::Publish(m));
    assert_eq!(puback_reason(&mut b, &mut p), [ReasonCode::NotAuthorized]);
    let (mut s, _) = b.connect_on(1, connect(&id_on(&b, 1, "s"), V5, true));
    b.subscribe(&mut s, &[("state/#", opts(QoS::AtLeastOnce))]);
    assert!(b.publishes(&mut s).is_empty());
}

/// Proves only the broker publishes on `$SYS` (v5 0x87 even under a `$SYS/*` publish policy,
/// a v3 client is closed), and `$SYS` is readable only where a policy starting with `$SYS`
/// grants it: the demo `*` does not.
#[test]
fn sys_topics_are_the_brokers() {
    let mut b = Broker::new(1);
    let (mut c, _) = b.connect(connect("c", V5, true));
    assert_eq!(
        b.subscribe(
            &mut c,
            &[
                ("$SYS/#", opts(QoS::AtMostOnce)),
                ("$SYS/+/x", opts(QoS::AtMostOnce))
            ]
        ),
        [ReasonCode::NotAuthorized, ReasonCode::NotAuthorized]
    );
    b.send(
        &mut c,
        Packet::Publish(publish("$SYS/broker/x", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert_eq!(puback_reason(&mut b, &mut c), [ReasonCode::NotAuthorized]);

    let rules = vec![topic_rule("monitor", "$SYS*", true, true)];
    let mut b = Broker::with(1, with_topics(rules));
    let (mut m, _) = b.connect(connect("m", V5, true));
    assert_eq!(
        b.subscribe(&mut m, &[("$SYS/#", opts(QoS::AtMostOnce))]),
        [ReasonCode::Success]
    );
    b.send(
        &mut m,
        Packet::Publish(publish("$SYS/broker/x", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert_eq!(puback_reason(&mut b, &mut m), [ReasonCode::NotAuthorized]);
    let (mut v3, _) = b.connect(connect("v3", V311, true));
    b.send(
        &mut v3,
        Packet::Publish(publish("$SYS/x", b"x", QoS::AtMostOnce, None)),
    );
    assert!(v3.closed);
}

fn share_rule(name: &str, subscription: &str, client_id: &str, control: bool) -> SubscriptionRule {
    SubscriptionRule {
        name: name.into(),
        filters: ClientFilters {
            client_id: self::name(client_id),
            ..ClientFilters::default()
        },
        subscription: Pattern::parse(subscription, PatternKind::ShareName).unwrap(),
        receive: true,
        control,
        queue_messages_max: 5000,
        queue_behavior: QueueBehavior::RejectNewMessages,
    }
}

/// Proves a client allowed the filter still may not join another application's shared
/// group: with SubscriptionPolicies on the endpoint, app A's clients create and join `A-*`
/// groups, app B's client is refused one (0x87) though its TopicPolicy allows the filter, and
/// a client with Receive only joins a group that exists but cannot create one; across shards.
#[test]
fn shared_groups_of_another_application_are_refused() {
    let mut settings = demo_settings();
    settings.endpoints[0].subscription_rules = vec![
        share_rule("app-a", "A-*", "a-*", true),
        share_rule("readers", "A-*", "r-*", false),
    ];
    let mut b = Broker::with(2, settings);
    let (mut r, _) = b.connect(connect(&id_on(&b, 1, "r-"), V5, true));
    assert_eq!(
        b.subscribe(&mut r, &[("$share/A-jobs/jobs/#", opts(QoS::AtLeastOnce))]),
        [ReasonCode::NotAuthorized],
        "Receive alone cannot create the group"
    );
    let (mut a, _) = b.connect(connect(&id_on(&b, 0, "a-"), V5, true));
    assert_eq!(
        b.subscribe(&mut a, &[("$share/A-jobs/jobs/#", opts(QoS::AtLeastOnce))]),
        [ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        b.subscribe(
            &mut r,
            &[("$SharedSubscription/A-jobs/jobs/#", opts(QoS::AtLeastOnce))]
        ),
        [ReasonCode::GrantedQoS1],
        "the group exists (on the other shard): Receive joins it"
    );
    let (mut other, _) = b.connect(connect("b-1", V5, true));
    assert_eq!(
        b.subscribe(
            &mut other,
            &[
                ("$share/A-jobs/jobs/#", opts(QoS::AtLeastOnce)),
                ("jobs/#", opts(QoS::AtLeastOnce))
            ]
        ),
        [ReasonCode::NotAuthorized, ReasonCode::GrantedQoS1]
    );
}

/// Proves a resumed session is checked again at CONNECT against the policies then in force:
/// a subscription no longer allowed is removed, and the messages queued for it while the
/// client was away are dropped; what is still allowed stays.
#[test]
fn a_resumed_session_loses_what_a_policy_change_revoked() {
    let mut b = Broker::with(1, with_topics(vec![topic_rule("all", "*", true, true)]));
    let mut c = connect("dev", V5, false);
    c.properties.session_expiry_interval_s = Some(600);
    let (mut d, _) = b.connect(c.clone());
    b.subscribe(
        &mut d,
        &[
            ("secret/+", opts(QoS::AtLeastOnce)),
            ("open/+", opts(QoS::AtLeastOnce)),
        ],
    );
    b.drop_connection(&mut d);
    let (mut p, _) = b.connect(connect("p", V5, true));
    b.send(
        &mut p,
        Packet::Publish(publish("secret/x", b"s1", QoS::AtLeastOnce, Some(1))),
    );
    b.send(
        &mut p,
        Packet::Publish(publish("open/x", b"o1", QoS::AtLeastOnce, Some(2))),
    );
    b.shards[0].settings = Arc::new(with_topics(vec![
        topic_rule("all-but-secret", "open/*", true, true),
        topic_rule("publish", "*", true, false),
    ]));
    let (mut d, ack) = b.connect(c);
    assert!(ack.session_present);
    assert_eq!(payloads(&b.publishes(&mut d)), [b"o1"]);
    b.send(
        &mut p,
        Packet::Publish(publish("secret/y", b"s2", QoS::AtLeastOnce, Some(3))),
    );
    b.send(
        &mut p,
        Packet::Publish(publish("open/y", b"o2", QoS::AtLeastOnce, Some(4))),
    );
    assert_eq!(payloads(&b.publishes(&mut d)), [b"o2"]);
}

/// Proves a retained message is not delivered from the store once its publisher has lost the
/// right to publish there, while the live subscribers of the moment got it.
#[test]
fn retained_messages_follow_their_publishers_rights() {
    let rules = vec![topic_rule("all", "*", true, true)];
    let mut b = Broker::with(2, with_topics(rules));
    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut m = publish("config/x", b"v1", QoS::AtMostOnce, None);
    m.retain = true;
    b.send(&mut p, Packet::Publish(m));
    let (mut early, _) = b.connect(connect("early", V5, true));
    b.subscribe(&mut early, &[("config/#", opts(QoS::AtMostOnce))]);
    assert_eq!(payloads(&b.publishes(&mut early)), [b"v1"]);
    let revoked = with_topics(vec![
        topic_rule("read", "*", false, true),
        topic_rule("others", "*", true, false),
    ]);
    let mut revoked = revoked;
    revoked.endpoints[0].topic_rules[1].filters.client_id = name("q*");
    for shard in &mut b.shards {
        shard.settings = Arc::new(revoked.clone());
    }
    for on in 0..2 {
        let (mut late, _) = b.connect_on(on, connect(&id_on(&b, on as u16, "late"), V5, true));
        b.subscribe(&mut late, &[("config/#", opts(QoS::AtMostOnce))]);
        assert!(b.publishes(&mut late).is_empty(), "shard {on}");
    }
}
