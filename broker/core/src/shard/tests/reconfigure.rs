//! A configuration changed under connected clients (`shard/reconfigure.rs`): who is
//! disconnected, who stays and loses nothing, what a client keeps of what it was granted,
//! endpoints disabled, and connections refused with their reasons for the log.

use super::*;
use crate::policy::{Pattern, PatternKind};

/// The demo endpoint, admitting only client ids that match `client_id`.
fn admitting(client_id: &str) -> EndpointSettings {
    let mut endpoint = EndpointSettings::default();
    endpoint.connection_rules[0].filters.client_id =
        Some(Pattern::parse(client_id, PatternKind::ConnectionClientId).unwrap());
    endpoint
}

/// The demo endpoint, where clients may subscribe only to topics matching `topic`.
fn subscribing(topic: &str) -> EndpointSettings {
    let mut endpoint = EndpointSettings::default();
    endpoint.topic_rules[0].topic = Pattern::parse(topic, PatternKind::Topic).unwrap();
    endpoint
}

fn one(endpoint: EndpointSettings) -> Settings {
    Settings {
        endpoints: vec![endpoint],
        ..Settings::default()
    }
}

fn disconnect_reason(b: &mut Broker, c: &mut Client) -> Option<ReasonCode> {
    b.received(c).into_iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

/// Proves a ConnectionPolicy narrowed under connected clients disconnects exactly those it no
/// longer admits (v5 told 0x87, v3 closed without a word), on one shard and across three, and
/// that the clients it still admits stay connected and keep exchanging messages; a refused
/// client that connects again is refused with 0x87, and the refusal says why.
#[test]
fn clients_no_longer_admitted_are_disconnected_and_the_others_stay() {
    for n in [1, 3] {
        let mut b = Broker::with(n, one(admitting("*")));
        let (mut sub, _) = b.connect_on(0, connect("dev-sub", V5, true));
        b.subscribe(&mut sub, &[("t/#", opts(QoS::AtLeastOnce))]);
        let (mut publisher, _) = b.connect_on(usize::from(n - 1), connect("dev-pub", V311, true));
        let (mut app5, _) = b.connect(connect("app-5", V5, true));
        let (mut app3, _) = b.connect(connect("app-3", V311, true));
        let done = b.reconfigure(
            one(admitting("dev-*")),
            &mut [&mut sub, &mut publisher, &mut app5, &mut app3],
        );
        assert_eq!((done.checked, done.revoked, done.closed), (4, 2, 0));
        assert_eq!(
            disconnect_reason(&mut b, &mut app5),
            Some(ReasonCode::NotAuthorized)
        );
        assert!(app5.closed);
        assert!(app3.closed);
        assert!(
            app3.inbox.is_empty(),
            "a v3 client has no DISCONNECT to be told with"
        );
        assert!(!sub.closed && !publisher.closed);
        b.send(
            &mut publisher,
            Packet::Publish(publish("t/x", b"after", QoS::AtLeastOnce, Some(1))),
        );
        assert_eq!(payloads(&b.publishes(&mut sub)), [b"after"]);
        let (_, again) = b.connect(connect("app-5", V5, true));
        assert_eq!(again.reason_code, ReasonCode::NotAuthorized);
        let (client_id, why) = b.refusals.last().expect("the refusal is reported");
        assert_eq!(client_id.as_deref(), Some("app-5"));
        assert!(
            matches!(why, RefusedFor::Connect(ReasonCode::NotAuthorized, cause) if cause.contains("ConnectionPolicy")),
            "{why}"
        );
    }
}

/// Proves a client disconnected for no longer qualifying does not leave its will behind (the
/// will was granted by the admission it lost), while its session stays to its expiry: once
/// the policy admits it again it resumes with Session Present.
#[test]
fn a_revoked_client_keeps_its_session_but_not_its_will() {
    let mut b = Broker::with(1, one(admitting("*")));
    let mut w = watcher(&mut b);
    let durable = will_connect("app-1", None, 600);
    let (mut app, _) = b.connect(durable.clone());
    let done = b.reconfigure(one(admitting("watcher")), &mut [&mut app, &mut w]);
    assert_eq!(done.revoked, 1);
    assert!(app.closed);
    assert!(b.publishes(&mut w).is_empty(), "the will was not published");
    b.reconfigure(one(admitting("*")), &mut [&mut w]);
    let (_, resumed) = b.connect(durable);
    assert!(resumed.session_present);
}

/// Proves a client whose will's topic a TopicPolicy no longer allows is disconnected, as its
/// CONNECT would now be refused: the will may not be published where the client may not.
#[test]
fn a_client_whose_will_is_no_longer_allowed_is_disconnected() {
    let mut b = Broker::with(1, one(EndpointSettings::default()));
    let (mut app, _) = b.connect(will_connect("app-1", None, 0));
    let (mut other, _) = b.connect(connect("other", V5, true));
    let done = b.reconfigure(one(subscribing("data/*")), &mut [&mut app, &mut other]);
    assert_eq!((done.checked, done.revoked), (2, 1));
    assert_eq!(
        disconnect_reason(&mut b, &mut app),
        Some(ReasonCode::NotAuthorized)
    );
    assert!(!other.closed);
}

/// Proves subscriptions a TopicPolicy no longer allows are removed from a client that stays
/// connected: what it held on those topics is dropped (in flight and queued), messages on
/// the topics still allowed keep arriving, and messages on the others no longer do.
#[test]
fn subscriptions_no_longer_allowed_are_removed_and_the_client_stays() {
    for n in [1, 2] {
        let mut b = Broker::with(n, one(EndpointSettings::default()));
        let mut c = connect("sub", V5, true);
        c.properties.receive_maximum = NonZeroU16::new(1);
        let (mut sub, _) = b.connect(c);
        b.subscribe(
            &mut sub,
            &[
                ("keep/+", opts(QoS::AtLeastOnce)),
                ("drop/+", opts(QoS::AtLeastOnce)),
            ],
        );
        let (mut publisher, _) = b.connect_on(usize::from(n - 1), connect("pub", V5, true));
        for i in 1..=3u16 {
            let message = publish("drop/x", b"held", QoS::AtLeastOnce, Some(i));
            b.send(&mut publisher, Packet::Publish(message));
        }
        assert_eq!(b.publishes(&mut sub).len(), 1, "one in flight, two queued");
        let done = b.reconfigure(one(subscribing("keep/*")), &mut [&mut sub, &mut publisher]);
        assert_eq!(
            (
                done.revoked,
                done.subscriptions_removed,
                done.messages_dropped
            ),
            (0, 1, 3)
        );
        assert!(!sub.closed);
        b.send(&mut sub, Packet::PubAck(ack(1, ReasonCode::Success)));
        b.send(
            &mut publisher,
            Packet::Publish(publish("drop/x", b"gone", QoS::AtMostOnce, None)),
        );
        b.send(
            &mut publisher,
            Packet::Publish(publish("keep/x", b"kept", QoS::AtMostOnce, None)),
        );
        assert_eq!(payloads(&b.publishes(&mut sub)), [b"kept"]);
        assert_eq!(
            b.subscribe(&mut sub, &[("drop/+", opts(QoS::AtMostOnce))]),
            [ReasonCode::NotAuthorized],
            "new subscriptions are decided by the new policy"
        );
    }
}

/// Proves settings whose policies did not change leave connected clients alone: none is
/// judged again, and broker limits change for later decisions only.
#[test]
fn unchanged_policies_check_nobody() {
    let mut b = Broker::with(2, one(EndpointSettings::default()));
    let (mut c, _) = b.connect(connect("c", V5, true));
    let mut settings = one(EndpointSettings::default());
    settings.broker.subscriptions_max = 1;
    let done = b.reconfigure(settings, &mut [&mut c]);
    assert_eq!(done, Reconfigured::default());
    assert_eq!(
        b.subscribe(
            &mut c,
            &[("a", opts(QoS::AtMostOnce)), ("b", opts(QoS::AtMostOnce))]
        ),
        [ReasonCode::Success, ReasonCode::QuotaExceeded],
        "the lowered MaxSubscriptionsPerSession applies at once"
    );
}

/// Proves a connection keeps the Topic Alias Maximum and Receive Maximum it was told in its
/// CONNACK when the broker's change: an alias up to the old maximum stays valid after it was
/// lowered, one beyond the old maximum is still refused after it was raised (regression: the
/// alias table, sized at the first alias, was indexed with the new maximum), and new clients
/// are told the new values.
#[test]
fn limits_granted_in_connack_hold_for_the_connection() {
    let mut b = Broker::with(1, one(EndpointSettings::default()));
    let (mut s, _) = b.connect(connect("s", V311, true));
    b.subscribe(&mut s, &[("t", opts(QoS::AtMostOnce))]);
    let (mut old, told) = b.connect(connect("old", V5, true));
    assert_eq!(told.properties.topic_alias_maximum, Some(16));
    let mut m = publish("t", b"1", QoS::AtMostOnce, None);
    m.properties.topic_alias = NonZeroU16::new(1);
    b.send(&mut old, Packet::Publish(m.clone()));
    let mut lower = one(EndpointSettings::default());
    lower.broker.topic_aliases_max = 2;
    lower.broker.inflight_max = 1;
    b.reconfigure(lower, &mut [&mut old, &mut s]);
    m.properties.topic_alias = NonZeroU16::new(10);
    b.send(&mut old, Packet::Publish(m.clone()));
    for pid in 1..=2 {
        // Unacknowledged until their PUBREL, which the client does not send.
        let qos2 = publish("t", b"q", QoS::ExactlyOnce, Some(pid));
        b.send(&mut old, Packet::Publish(qos2));
    }
    assert!(
        !old.closed,
        "alias 10 and two unreleased QoS 2 were granted"
    );
    let (_, new) = b.connect(connect("new", V5, true));
    assert_eq!(new.properties.topic_alias_maximum, Some(2));
    assert_eq!(new.properties.receive_maximum, NonZeroU16::new(1));
    let mut higher = one(EndpointSettings::default());
    higher.broker.topic_aliases_max = 64;
    b.reconfigure(higher, &mut [&mut old, &mut s]);
    m.properties.topic_alias = NonZeroU16::new(20);
    b.send(&mut old, Packet::Publish(m));
    assert_eq!(
        disconnect_reason(&mut b, &mut old),
        Some(ReasonCode::TopicAliasInvalid)
    );
    assert_eq!(b.publishes(&mut s).len(), 4);
}

/// Proves a lowered MaxMessages applies to messages queued from then on: a queue already
/// longer keeps what it holds, and the next message is refused (the v5 publisher is told
/// 0x97), with the behaviour the new policy names.
#[test]
fn a_lowered_max_messages_applies_to_new_messages() {
    let mut b = Broker::with(1, one(EndpointSettings::default()));
    let mut c = connect("sub", V5, true);
    c.properties.receive_maximum = NonZeroU16::new(1);
    let (mut sub, _) = b.connect(c);
    b.subscribe(&mut sub, &[("q", opts(QoS::AtLeastOnce))]);
    let (mut publisher, _) = b.connect(connect("pub", V5, true));
    let publish_one = |b: &mut Broker, p: &mut Client, i: u16| {
        b.send(
            p,
            Packet::Publish(publish("q", b"m", QoS::AtLeastOnce, Some(i))),
        );
        match b.received(p).pop() {
            Some(Packet::PubAck(a)) => a.reason_code,
            other => panic!("PUBACK expected, got {other:?}"),
        }
    };
    for i in 1..=4 {
        assert_eq!(publish_one(&mut b, &mut publisher, i), ReasonCode::Success);
    }
    let mut endpoint = EndpointSettings::default();
    endpoint.topic_rules[0].queue_messages_max = 2;
    endpoint.topic_rules[0].name = "Smaller".into();
    let done = b.reconfigure(one(endpoint), &mut [&mut sub, &mut publisher]);
    assert_eq!((done.checked, done.revoked), (2, 0));
    assert_eq!(
        publish_one(&mut b, &mut publisher, 5),
        ReasonCode::QuotaExceeded
    );
    let mut delivered = b.publishes(&mut sub).len();
    for pid in 1..=4 {
        b.send(&mut sub, Packet::PubAck(ack(pid, ReasonCode::Success)));
        delivered += b.publishes(&mut sub).len();
    }
    assert_eq!(delivered, 4, "the four queued before the change");
}

/// Proves an endpoint disabled under its clients closes their connections (v5 told 0x8B) and
/// takes no more (a CONNECT handed over by a shard that had not yet applied the change is
/// refused, 0x88), while the clients of other endpoints stay.
#[test]
fn a_disabled_endpoint_closes_its_connections() {
    let second = EndpointSettings {
        name: "Second".into(),
        ..EndpointSettings::default()
    };
    let both = Settings {
        endpoints: vec![EndpointSettings::default(), second.clone()],
        ..Settings::default()
    };
    let mut b = Broker::with(2, both);
    let (mut stays, _) = b.connect_at(0, 0, connect("stays", V5, true));
    let (mut goes, _) = b.connect_at(0, 1, connect("goes", V5, true));
    let mut waiting = b.open_at(1, 1, V5);
    let disabled = Settings {
        endpoints: vec![
            EndpointSettings::default(),
            EndpointSettings {
                enabled: false,
                ..second
            },
        ],
        ..Settings::default()
    };
    let done = b.reconfigure(disabled, &mut [&mut stays, &mut goes, &mut waiting]);
    assert_eq!(
        done.closed, 2,
        "the connected client and the one not yet connected"
    );
    assert_eq!(
        disconnect_reason(&mut b, &mut goes),
        Some(ReasonCode::ServerShuttingDown)
    );
    assert!(waiting.closed && !stays.closed);
    let (_, late) = b.connect_at(1, 1, connect("late", V5, true));
    assert_eq!(late.reason_code, ReasonCode::ServerUnavailable);
}
