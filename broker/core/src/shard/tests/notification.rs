//! Disconnected-client notification on the shard: marks granted by policy, arrivals counted
//! while the session is away, rounds on the interval and their bounds, the consumer's rules,
//! and a notification nobody could take resumed at the same client.

use super::*;
use crate::notification::{SCAN_SLICE, TOPIC};
use crate::policy::{ClientFilters, Pattern, PatternKind, TopicRule};

fn rule(name: &str, topic: &str, publish: bool, notify: bool) -> TopicRule {
    TopicRule {
        name: name.into(),
        filters: ClientFilters::default(),
        topic: Pattern::parse(topic, PatternKind::Topic).unwrap(),
        publish,
        subscribe: true,
        queue_messages_max: 5000,
        queue_behavior: QueueBehavior::RejectNewMessages,
        message_ttl_max_s: None,
        disconnected_client_notification: notify,
    }
}

/// `app/*` marked, `plain/*` not, and the notifications readable by anyone.
fn settings() -> Settings {
    Settings {
        endpoints: vec![EndpointSettings {
            topic_rules: vec![
                rule("Marked", "app/*", true, true),
                rule("Plain", "plain/*", true, false),
                rule("Gateway", TOPIC, false, false),
            ],
            ..EndpointSettings::default()
        }],
        ..Settings::default()
    }
}

fn persistent(id: &str) -> Connect {
    let mut c = connect(id, V5, false);
    c.properties.session_expiry_interval_s = Some(3600);
    c
}

/// A clean-session consumer of the notifications, on shard `on`.
fn gateway(b: &mut Broker, on: usize) -> Client {
    let (mut g, _) = b.connect_on(on, connect("gateway", V5, true));
    let codes = b.subscribe(&mut g, &[(TOPIC, opts(QoS::AtLeastOnce))]);
    assert_eq!(codes, [ReasonCode::GrantedQoS1]);
    g
}

/// A persistent client subscribed to `filter` that then goes away.
fn sleeper(b: &mut Broker, on: usize, id: &str, filter: &str) {
    let (mut c, _) = b.connect_on(on, persistent(id));
    b.subscribe(&mut c, &[(filter, opts(QoS::AtLeastOnce))]);
    b.drop_connection(&mut c);
}

fn send_qos1(b: &mut Broker, publisher: &mut Client, topic: &str, times: u16) {
    for i in 0..times {
        b.send(
            publisher,
            Packet::Publish(publish(topic, b"m", QoS::AtLeastOnce, Some(i + 1))),
        );
    }
}

/// Lets one notification interval (60 s by default) pass, a tick a second as the server does,
/// and one more: the first tick (the broker's start) schedules the first round.
fn one_interval(b: &mut Broker) {
    for _ in 0..61 {
        b.advance(1.0);
    }
}

fn records(b: &mut Broker, g: &mut Client) -> Vec<String> {
    b.publishes(g)
        .into_iter()
        .map(|p| {
            assert_eq!(&*p.topic, TOPIC);
            assert_eq!(p.qos, QoS::AtLeastOnce);
            String::from_utf8(p.payload.to_vec()).unwrap()
        })
        .collect()
}

fn published(b: &Broker) -> u64 {
    b.shards
        .iter()
        .map(|s| s.stats.notifications_published)
        .sum()
}

/// Proves the whole path, on one shard and across shards (sleeper, publisher and gateway each
/// elsewhere): QoS 1 messages queued on a marked subscription of a disconnected persistent
/// session are notified once per interval with Amlen's JSON and the count since it
/// disconnected; QoS 0 (not queued) does not count; a round with nothing new is silent.
#[test]
fn a_sleeping_client_is_notified_with_its_counts() {
    for shards in [1u16, 3] {
        let mut b = Broker::with(shards, settings());
        let on = |i: u16| usize::from(i % shards);
        let id = id_on(&b, 1 % shards, "phone");
        sleeper(&mut b, on(1), &id, "app/u1/inbox");
        let mut g = gateway(&mut b, on(2));
        let (mut p, _) = b.connect_on(0, connect("publisher", V5, true));
        send_qos1(&mut b, &mut p, "app/u1/inbox", 3);
        b.send(
            &mut p,
            Packet::Publish(publish("app/u1/inbox", b"q0", QoS::AtMostOnce, None)),
        );
        one_interval(&mut b);
        let expected = format!(
            r#"{{"ClientId":"{id}","MessagesArrived":[{{"TopicString":"app/u1/inbox","MessageCount":3}}]}}"#
        );
        assert_eq!(records(&mut b, &mut g), [expected], "{shards} shards");
        assert_eq!(published(&b), 1);
        one_interval(&mut b);
        assert!(
            records(&mut b, &mut g).is_empty(),
            "nothing new, nothing said"
        );
        send_qos1(&mut b, &mut p, "app/u1/inbox", 1);
        one_interval(&mut b);
        let again = records(&mut b, &mut g);
        assert_eq!(again.len(), 1);
        assert!(again[0].contains(r#""MessageCount":4"#), "{}", again[0]);
    }
}

/// Proves that unmarked policies, connected clients and clean sessions produce nothing, that
/// a client that reconnects is counted from nothing when it leaves again, and that the
/// user's id is reported for a client that has one.
#[test]
fn only_marked_disconnected_persistent_sessions_are_notified() {
    let mut b = Broker::with(1, settings());
    sleeper(&mut b, 0, "unmarked", "plain/x");
    let (mut awake, _) = b.connect(persistent("awake"));
    b.subscribe(&mut awake, &[("app/awake", opts(QoS::AtLeastOnce))]);
    let (mut clean, _) = b.connect(connect("clean", V5, true));
    b.subscribe(&mut clean, &[("app/clean", opts(QoS::AtLeastOnce))]);
    b.drop_connection(&mut clean);
    let mut g = gateway(&mut b, 0);
    let (mut p, _) = b.connect(connect("publisher", V5, true));
    for topic in ["plain/x", "app/awake", "app/clean"] {
        send_qos1(&mut b, &mut p, topic, 2);
    }
    one_interval(&mut b);
    assert!(records(&mut b, &mut g).is_empty());
    assert_eq!(published(&b), 0);
    // The awake client sleeps now: only what arrives from now on counts.
    b.drop_connection(&mut awake);
    send_qos1(&mut b, &mut p, "app/awake", 1);
    one_interval(&mut b);
    let got = records(&mut b, &mut g);
    assert_eq!(
        got,
        [
            r#"{"ClientId":"awake","MessagesArrived":[{"TopicString":"app/awake","MessageCount":1}]}"#
        ]
    );
    let (mut back, _) = b.connect(persistent("awake"));
    b.publishes(&mut back); // its messages, delivered
    b.drop_connection(&mut back);
    send_qos1(&mut b, &mut p, "app/awake", 1);
    one_interval(&mut b);
    let got = records(&mut b, &mut g);
    assert!(got[0].contains(r#""MessageCount":1"#), "{}", got[0]);
}

/// Proves nothing is published while nobody subscribes to the notifications (the counter
/// stays at zero), and that what waited is notified once someone does.
#[test]
fn nothing_is_published_without_a_consumer() {
    let mut b = Broker::with(2, settings());
    sleeper(&mut b, 0, "phone", "app/p");
    let (mut p, _) = b.connect(connect("publisher", V5, true));
    send_qos1(&mut b, &mut p, "app/p", 2);
    one_interval(&mut b);
    one_interval(&mut b);
    assert_eq!(published(&b), 0);
    let mut g = gateway(&mut b, 1);
    one_interval(&mut b);
    assert_eq!(records(&mut b, &mut g).len(), 1);
    assert_eq!(published(&b), 1);
}

/// Proves Amlen's consumer rules: no shared subscription (0x9E), no persistent session
/// (0x83), and the right only from a policy that names `$SYS` (`*` grants none: 0x87),
/// for filters that reach the topic through wildcards too.
#[test]
fn the_consumer_rules_hold() {
    let mut b = Broker::with(1, settings());
    let (mut c, _) = b.connect(connect("shared", V5, true));
    let codes = b.subscribe(
        &mut c,
        &[(&format!("$share/g/{TOPIC}"), opts(QoS::AtLeastOnce))],
    );
    assert_eq!(codes, [ReasonCode::SharedSubscriptionsNotSupported]);
    let (mut d, _) = b.connect(persistent("durable"));
    let codes = b.subscribe(&mut d, &[(TOPIC, opts(QoS::AtLeastOnce))]);
    assert_eq!(codes, [ReasonCode::ImplementationSpecificError]);
    let mut open = Broker::with(1, demo_settings());
    let (mut e, _) = open.connect(connect("anyone", V5, true));
    let codes = open.subscribe(
        &mut e,
        &[
            (TOPIC, opts(QoS::AtLeastOnce)),
            ("$SYS/#", opts(QoS::AtLeastOnce)),
        ],
    );
    assert_eq!(
        codes,
        [ReasonCode::NotAuthorized, ReasonCode::NotAuthorized]
    );
    let mut sys = settings();
    sys.endpoints[0]
        .topic_rules
        .push(rule("Sys", "$SYS*", false, false));
    let mut b = Broker::with(1, sys);
    let (mut d, _) = b.connect(persistent("durable"));
    let codes = b.subscribe(&mut d, &[("$SYS/#", opts(QoS::AtLeastOnce))]);
    assert_eq!(
        codes,
        [ReasonCode::ImplementationSpecificError],
        "a wildcard reaching it"
    );
}

/// Proves a round is taken at its pace (`PACE_MIN_PER_S`), in slices of at most `SCAN_SLICE`
/// sessions, each slice one call of `Shard::work`, so that no round holds its shard for longer
/// than a slice, and the server is told when the next is due.
#[test]
fn a_round_is_paced_and_taken_a_slice_at_a_time() {
    let mut b = Broker::with(1, settings());
    let sleepers = SCAN_SLICE * 2 + 10;
    for i in 0..sleepers {
        sleeper(&mut b, 0, &format!("phone{i}"), &format!("app/{i}"));
    }
    let mut g = gateway(&mut b, 0);
    let (mut p, _) = b.connect(connect("publisher", V5, true));
    for i in 0..sleepers {
        send_qos1(&mut b, &mut p, &format!("app/{i}"), 1);
    }
    let shard = &mut b.shards[0];
    let mut now = b.now;
    for _ in 0..61 {
        now += Duration::from_secs(1);
        shard.tick(now);
    }
    let mut slices = Vec::new();
    let mut slice_at = |shard: &mut Shard, at: Instant| {
        let before = shard.stats.notifications_published;
        shard.work(at, &mut Vec::new());
        slices.push(shard.stats.notifications_published - before);
    };
    assert_eq!(
        shard.next_work(now),
        Some(now),
        "the round's first is due at once"
    );
    slice_at(shard, now);
    let half_ms = Duration::from_micros(500);
    assert_eq!(
        shard.next_work(now),
        Some(now + half_ms),
        "then 2,000 a second"
    );
    slice_at(shard, now);
    slice_at(shard, now + Duration::from_millis(10));
    let later = now + Duration::from_secs(1);
    while shard.next_work(later).is_some() {
        slice_at(shard, later);
    }
    let slice = SCAN_SLICE as u64;
    assert_eq!(slices, [1, 0, 20, slice, sleepers as u64 - 21 - slice]);
    assert_eq!(shard.next_work(later), None);
    b.now = later;
    // The gateway's window and queue hold them all (128 in flight, 5000 queued).
    let mut got = 0;
    loop {
        let batch = b.publishes(&mut g);
        if batch.is_empty() {
            break;
        }
        got += batch.len();
        for publish in batch {
            let id = publish.packet_id.unwrap();
            b.send(&mut g, Packet::PubAck(ack(id.get(), ReasonCode::Success)));
        }
    }
    assert_eq!(got, sleepers);
}

/// Proves a notification the consumer could not take (its queue full) ends the round and
/// is the first of the next: the gateway, with one message in flight and one queued, gets
/// the first two clients, and after it acknowledges them the third, then the fourth. The
/// counter counts what a consumer took, once each, also when it refused it first.
#[test]
fn a_refused_notification_resumes_at_the_same_client() {
    for shards in [1u16, 2] {
        let mut s = settings();
        s.broker.inflight_max = 1;
        s.endpoints[0].topic_rules[2].queue_messages_max = 1;
        let mut b = Broker::with(shards, s);
        let phones: Vec<String> = (0..4).map(|i| id_on(&b, 0, &format!("p{i}-"))).collect();
        for (i, id) in phones.iter().enumerate() {
            sleeper(&mut b, 0, id, &format!("app/{i}"));
        }
        let mut g = gateway(&mut b, usize::from(shards - 1));
        let (mut p, _) = b.connect(connect("publisher", V5, true));
        for i in 0..4 {
            send_qos1(&mut b, &mut p, &format!("app/{i}"), 1);
        }
        one_interval(&mut b);
        let mut order = Vec::new();
        for _ in 0..4 {
            let got = b.publishes(&mut g);
            assert!(
                got.len() <= 2,
                "window 1 and queue 1: {} at once",
                got.len()
            );
            for publish in &got {
                let text = String::from_utf8(publish.payload.to_vec()).unwrap();
                order.push(
                    phones
                        .iter()
                        .position(|id| text.contains(id.as_str()))
                        .unwrap(),
                );
                let id = publish.packet_id.unwrap();
                b.send(&mut g, Packet::PubAck(ack(id.get(), ReasonCode::Success)));
            }
            one_interval(&mut b);
        }
        assert_eq!(order, [0, 1, 2, 3], "{shards} shards: each once, in order");
        assert_eq!(
            published(&b),
            4,
            "{shards} shards: each counted once, when taken"
        );
    }
}

/// Proves the marks follow a policy changed while the broker runs, for a connected client:
/// `app/*` loses DisconnectedClientNotification, its client goes away and nothing is
/// notified; the flag comes back, the client connects and leaves again, and it is.
#[test]
fn marks_follow_a_live_policy_change() {
    let mut b = Broker::with(1, settings());
    let (mut phone, _) = b.connect(persistent("phone"));
    b.subscribe(&mut phone, &[("app/p", opts(QoS::AtLeastOnce))]);
    let mut unmarked = settings();
    unmarked.endpoints[0].topic_rules[0].disconnected_client_notification = false;
    let done = b.reconfigure(unmarked, &mut [&mut phone]);
    assert_eq!(done.checked, 1, "the connected client was judged again");
    b.drop_connection(&mut phone);
    let mut g = gateway(&mut b, 0);
    let (mut p, _) = b.connect(connect("publisher", V5, true));
    send_qos1(&mut b, &mut p, "app/p", 1);
    one_interval(&mut b);
    assert!(records(&mut b, &mut g).is_empty());
    b.reconfigure(settings(), &mut []);
    let (mut phone, _) = b.connect(persistent("phone"));
    b.publishes(&mut phone);
    b.drop_connection(&mut phone);
    send_qos1(&mut b, &mut p, "app/p", 1);
    one_interval(&mut b);
    assert_eq!(
        records(&mut b, &mut g).len(),
        1,
        "marked again when it resumed"
    );
}
