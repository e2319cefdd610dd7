//! What the administration API sees and does (`shard/inspect.rs`): listings that match the
//! clients connected, counters by endpoint, closing connections and deleting sessions.

use super::*;
use crate::monitor::{
    ConnectionFilter, ConnectionOrder, DeleteRefusal, SubscriptionFilter, SubscriptionOrder,
    Wildcard,
};

fn all() -> ConnectionFilter {
    ConnectionFilter::default()
}

fn by_client(id: &str) -> ConnectionFilter {
    ConnectionFilter {
        client_id: Wildcard::new(id),
        ..ConnectionFilter::default()
    }
}

/// Proves the connection listing shows each connected client once with its messages counted
/// both ways, in the order asked, filtered and cut to the limit; and that the endpoint's
/// counters agree.
#[test]
fn connections_are_listed_with_their_traffic() {
    let mut b = Broker::new(1);
    let (mut sub, _) = b.connect(connect("sub", V5, true));
    b.advance(2.0);
    let (mut publisher, _) = b.connect(connect("pub", V311, true));
    b.subscribe(&mut sub, &[("t", opts(QoS::AtMostOnce))]);
    for n in 0..3 {
        b.send(
            &mut publisher,
            Packet::Publish(publish("t", &[n], QoS::AtMostOnce, None)),
        );
    }
    assert_eq!(b.publishes(&mut sub).len(), 3);
    let now = b.now;
    let shard = &b.shards[0];
    let bytes = |conn: ConnId| (u64::from(conn) * 10, 1);
    let newest = shard.connections(now, &all(), ConnectionOrder::NewestConnection, 10, bytes);
    let ids: Vec<&str> = newest.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["pub", "sub"]);
    assert_eq!((newest[0].read_msgs, newest[0].write_msgs), (3, 0));
    assert_eq!((newest[1].read_msgs, newest[1].write_msgs), (0, 3));
    assert_eq!(newest[0].protocol, V311);
    assert_eq!(newest[0].endpoint, EndpointSettings::default().name);
    assert_eq!(
        newest[1].read_bytes,
        u64::from(sub.conn) * 10,
        "the server's count"
    );
    let oldest = shard.connections(now, &all(), ConnectionOrder::OldestConnection, 1, bytes);
    assert_eq!(oldest.len(), 1);
    assert_eq!(oldest[0].client_id, "sub");
    let one = shard.connections(now, &by_client("s*"), ConnectionOrder::default(), 10, bytes);
    assert_eq!(one.len(), 1);
    let stats = &shard.stats.endpoints[0];
    assert_eq!((stats.accepted, stats.active, stats.bad), (2, 2, 0));
    assert_eq!((stats.messages_in, stats.messages_out), (3, 3));
}

/// Proves subscriptions list their client, filter and share group, with the session's queue
/// as their buffered count; and that the gauges count what the walk finds.
#[test]
fn subscriptions_show_their_session_queue() {
    let mut b = Broker::new(1);
    let mut c = connect("durable", V5, false);
    c.properties.session_expiry_interval_s = Some(600);
    let (mut sub, _) = b.connect(c);
    b.subscribe(
        &mut sub,
        &[
            ("a/+", opts(QoS::AtLeastOnce)),
            ("$share/g/b", opts(QoS::AtLeastOnce)),
        ],
    );
    b.drop_connection(&mut sub);
    let (mut publisher, _) = b.connect(connect("p", V5, true));
    for n in 1..=2 {
        b.send(
            &mut publisher,
            Packet::Publish(publish("a/x", &[n as u8], QoS::AtLeastOnce, Some(n))),
        );
    }
    let shard = &b.shards[0];
    let mut subs = shard.subscriptions(
        &SubscriptionFilter::default(),
        SubscriptionOrder::default(),
        10,
    );
    subs.sort_by(|a, b| a.sub_name.cmp(&b.sub_name));
    assert_eq!(subs.len(), 2);
    assert_eq!(
        (subs[0].sub_name.as_str(), subs[0].topic_string.as_str()),
        ("a/+", "a/+")
    );
    assert_eq!(
        (subs[1].sub_name.as_str(), subs[1].topic_string.as_str()),
        ("g", "b")
    );
    assert!(subs[1].is_shared && !subs[0].is_shared);
    assert!(subs
        .iter()
        .all(|s| s.is_durable && s.client_id == "durable"));
    assert!(subs
        .iter()
        .all(|s| s.buffered_msgs == 2 && s.max_messages == 5000));
    let nondurable = SubscriptionFilter {
        durable: Some(false),
        ..SubscriptionFilter::default()
    };
    assert!(shard
        .subscriptions(&nondurable, SubscriptionOrder::default(), 10)
        .is_empty());
    let gauges = shard.gauges();
    assert_eq!(
        (gauges.sessions, gauges.subscriptions, gauges.buffered_msgs),
        (2, 2, 2)
    );
    assert_eq!(gauges.connections, 1);
    let clients = shard.clients(&Wildcard::any(), Some(false), 10);
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client_id, "durable");
    assert_eq!(clients[0].last_connected, Some(b.now));
    assert_eq!(clients[0].buffered_msgs, 2);
}

/// Proves an administrator's close ends exactly the matching connections (a v5 client is told
/// 0x98), and that a session is deleted only once disconnected, its queued messages with it.
#[test]
fn close_and_delete() {
    let mut b = Broker::new(1);
    let mut c = connect("keep", V5, false);
    c.properties.session_expiry_interval_s = Some(600);
    let (mut kept, _) = b.connect(c.clone());
    let (mut other, _) = b.connect(connect("other", V5, true));
    let now = b.now;
    assert_eq!(b.shards[0].close_connections(now, &by_client("nobody")), 0);
    assert_eq!(b.shards[0].close_connections(now, &by_client("keep")), 1);
    b.settle(&mut [&mut kept, &mut other]);
    let got = b.received(&mut kept);
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::AdministrativeAction),
        "{got:?}"
    );
    assert!(b.received(&mut other).is_empty(), "the other client stays");
    b.shards[0].release(kept.conn, now);
    let (mut again, connack) = b.connect(c.clone());
    assert!(connack.session_present);
    assert_eq!(
        b.shards[0].delete_session(now, "keep"),
        Err(DeleteRefusal::Connected)
    );
    b.drop_connection(&mut again);
    assert_eq!(b.shards[0].delete_session(now, "keep"), Ok(()));
    assert_eq!(
        b.shards[0].delete_session(now, "keep"),
        Err(DeleteRefusal::NotFound)
    );
    let (_, connack) = b.connect(c);
    assert!(!connack.session_present, "deleted");
}

/// Proves a connection that never completes its CONNECT counts as a bad connection of its
/// endpoint, and one handed to the shard that owns its client id is counted once.
#[test]
fn bad_and_handed_off_connections_are_counted_once() {
    let mut b = Broker::new(2);
    let id = id_on(&b, 1, "moved");
    let (_moved, _) = b.connect_on(0, connect(&id, V5, true));
    let mut silent = b.open_on(0, V5);
    b.drop_connection(&mut silent);
    let total = |b: &Broker, f: fn(&crate::stats::EndpointStats) -> i64| -> i64 {
        b.shards
            .iter()
            .map(|s| s.stats.endpoints.first().map_or(0, f))
            .sum()
    };
    assert_eq!(total(&b, |e| e.accepted as i64), 2);
    assert_eq!(total(&b, |e| e.active), 1);
    assert_eq!(total(&b, |e| e.bad as i64), 1);
}
