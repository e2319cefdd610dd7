//! Output held until the journal's records are durable (`shard/durability.rs`), with a journal
//! that is "on disk": its records are durable only when the test says so.

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::journal::{Journal, Record};

/// A journal whose records become durable only when the test calls [`sync`], and whose disk
/// is full while the test's flag says so.
struct OnDisk(Rc<Cell<bool>>);

impl Journal for OnDisk {
    fn record(&mut self, _record: Record<'_>) {}

    fn synchronous(&self) -> bool {
        false
    }

    fn full(&self) -> bool {
        self.0.get()
    }
}

fn on_disk(shards: u16) -> Broker {
    on_disk_with(shards, Rc::default())
}

/// A broker whose shards share one disk, full while `full` is set.
fn on_disk_with(shards: u16, full: Rc<Cell<bool>>) -> Broker {
    let mut b = Broker::new(shards);
    for shard in &mut b.shards {
        shard.set_journal(Box::new(OnDisk(full.clone())));
    }
    b
}

/// Every shard's journal reports all its records durable.
fn sync(b: &mut Broker) {
    for shard in &mut b.shards {
        let made = shard.records_made();
        shard.durable(made);
    }
}

/// Connects without reading the CONNACK (it may be held).
fn connect_raw(b: &mut Broker, c: Connect) -> Client {
    let mut client = b.open_on(0, c.protocol);
    b.send(&mut client, Packet::Connect(Box::new(c)));
    client
}

/// Connects `c` (a durable session) and subscribes it to `topic`, its records durable.
fn subscribed_durably(b: &mut Broker, c: Connect, topic: &str, qos: QoS) -> Client {
    let mut client = connect_raw(b, c);
    b.send(&mut client, subscribe(1, &[(topic, opts(qos))]));
    sync(b);
    b.received(&mut client);
    client
}

/// Sends a QoS 1 PUBLISH of `payload` to `topic` with packet id `id`.
fn publish_qos1(b: &mut Broker, c: &mut Client, topic: &str, payload: &[u8], id: u16) {
    b.send(
        c,
        Packet::Publish(publish(topic, payload, QoS::AtLeastOnce, Some(id))),
    );
}

fn puback_ok(id: u16) -> Packet {
    Packet::PubAck(ack(id, ReasonCode::Success))
}

fn names(packets: &[Packet]) -> Vec<&'static str> {
    packets.iter().map(Packet::name).collect()
}

/// Proves a persistent session's CONNACK and SUBACK, and the PUBACK of a message stored for
/// it, wait for the disk, while a QoS 1 delivery does not (a duplicate after a crash is
/// allowed at QoS 1); a clean session's CONNACK waits for nothing.
#[test]
fn acknowledgements_wait_for_the_records_they_promise() {
    let mut b = on_disk(1);
    let mut d = connect_raw(&mut b, connect("d", V311, false));
    assert!(b.received(&mut d).is_empty(), "CONNACK held");
    sync(&mut b);
    assert_eq!(names(&b.received(&mut d)), ["CONNACK"]);

    b.send(&mut d, subscribe(1, &[("t", opts(QoS::AtLeastOnce))]));
    assert!(b.received(&mut d).is_empty(), "SUBACK held");
    sync(&mut b);
    assert_eq!(names(&b.received(&mut d)), ["SUBACK"]);

    let (mut p, _) = b.connect(connect("p", V311, true));
    publish_qos1(&mut b, &mut p, "t", b"x", 7);
    assert_eq!(
        b.publishes(&mut d).len(),
        1,
        "a QoS 1 delivery goes at once"
    );
    assert!(b.received(&mut p).is_empty(), "PUBACK held");
    sync(&mut b);
    assert_eq!(b.received(&mut p), [puback_ok(7)]);
}

/// Proves a QoS 1 PUBLISH that stores nothing durable is acknowledged at once, even while
/// another connection waits for the disk; and that one connection's acknowledgements keep
/// their order when the first waits and the second would not.
#[test]
fn only_what_made_records_waits_and_order_holds() {
    let mut b = on_disk(1);
    let _subscriber = subscribed_durably(
        &mut b,
        connect("d", V311, false),
        "durable",
        QoS::AtLeastOnce,
    );
    let (mut clean, _) = b.connect(connect("clean", V311, true));
    b.subscribe(&mut clean, &[("passing", opts(QoS::AtLeastOnce))]);

    let (mut p, _) = b.connect(connect("p", V311, true));
    publish_qos1(&mut b, &mut p, "passing", b"x", 1);
    assert_eq!(b.received(&mut p), [puback_ok(1)]);

    publish_qos1(&mut b, &mut p, "durable", b"x", 2);
    publish_qos1(&mut b, &mut p, "passing", b"x", 3);
    assert!(
        b.received(&mut p).is_empty(),
        "the second waits behind the first"
    );
    sync(&mut b);
    assert_eq!(b.received(&mut p), [puback_ok(2), puback_ok(3)]);
}

/// Proves each acknowledgement waits for its own message's records, not for the latest of
/// its connection: a publisher that sends again before the first message is durable gets the
/// first PUBACK once that one is (and not the second's), then the second once it is.
#[test]
fn each_acknowledgement_waits_only_for_its_own_records() {
    let mut b = on_disk(1);
    let _subscriber = subscribed_durably(&mut b, connect("d", V311, false), "t", QoS::AtLeastOnce);

    let (mut p, _) = b.connect(connect("p", V311, true));
    publish_qos1(&mut b, &mut p, "t", b"1", 1);
    let first = b.shards[0].records_made();
    publish_qos1(&mut b, &mut p, "t", b"2", 2);
    assert!(
        b.shards[0].records_made() > first,
        "the second message made records of its own"
    );
    assert!(b.received(&mut p).is_empty(), "both held");
    b.shards[0].durable(first);
    assert_eq!(
        b.received(&mut p),
        [puback_ok(1)],
        "the first goes once its records are durable"
    );
    sync(&mut b);
    assert_eq!(b.received(&mut p), [puback_ok(2)]);
}

/// Proves a connection that closes while its acknowledgements wait for the journal is closed
/// only after they went: a publisher's DISCONNECT right after its PUBLISH loses no PUBACK.
#[test]
fn a_closing_connection_waits_for_its_held_acknowledgements() {
    let mut b = on_disk(1);
    let _subscriber = subscribed_durably(&mut b, connect("d", V311, false), "t", QoS::AtLeastOnce);

    let (mut p, _) = b.connect(connect("p", V311, true));
    publish_qos1(&mut b, &mut p, "t", b"x", 4);
    b.send(&mut p, Packet::Disconnect(Disconnect::normal()));
    assert!(b.received(&mut p).is_empty(), "PUBACK held");
    assert!(!p.closed, "not closed while its PUBACK waits");
    sync(&mut b);
    assert_eq!(b.received(&mut p), [puback_ok(4)]);
    assert!(p.closed, "closed once its last bytes went");
}

/// Proves a QoS 2 message is not sent to a durable session before its record is durable (a
/// crash must not forget a packet id the subscriber has seen), and that PUBREC and PUBCOMP
/// of the publisher's flow wait for the disk too.
#[test]
fn qos2_waits_in_both_directions() {
    let mut b = on_disk(1);
    let mut d = subscribed_durably(&mut b, connect("d", V311, false), "t", QoS::ExactlyOnce);

    let mut p = connect_raw(&mut b, connect("p", V311, false));
    sync(&mut b);
    b.received(&mut p);
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, Some(5))),
    );
    assert!(b.publishes(&mut d).is_empty(), "delivery held");
    assert!(b.received(&mut p).is_empty(), "PUBREC held");
    sync(&mut b);
    assert_eq!(b.publishes(&mut d).len(), 1);
    assert_eq!(
        b.received(&mut p),
        [Packet::PubRec(ack(5, ReasonCode::Success))]
    );
}

/// Proves a publish reaching a durable session on another shard is acknowledged only when
/// that shard's records are durable: the publishing shard's own disk is not enough, for a v3
/// publisher too (which cannot be told about other shards otherwise).
#[test]
fn a_publish_waits_for_every_shard_it_reached() {
    let mut b = on_disk(2);
    let sub_id = "d";
    let sub_shard = b.shards[0].owner_of(sub_id) as usize;
    let pub_id = (0..)
        .map(|i| format!("p{i}"))
        .find(|id| b.shards[0].owner_of(id) as usize != sub_shard)
        .unwrap();
    let pub_shard = 1 - sub_shard;
    let mut d = subscribed_durably(&mut b, connect(sub_id, V311, false), "t", QoS::AtLeastOnce);

    let (mut p, _) = b.connect(connect(&pub_id, V311, true));
    publish_qos1(&mut b, &mut p, "t", b"x", 9);
    let made = b.shards[pub_shard].records_made();
    b.shards[pub_shard].durable(made);
    assert!(
        b.received(&mut p).is_empty(),
        "the subscriber's shard has not synced"
    );
    sync(&mut b);
    assert_eq!(b.received(&mut p), [puback_ok(9)]);
    assert_eq!(b.publishes(&mut d).len(), 1);
}

/// Proves what a full store refuses and what it does not: a v5 QoS 1 PUBLISH gets PUBACK 0x97
/// and reaches nobody, a v3 one closes its connection (its PUBACK cannot say no), a durable
/// session's SUBSCRIBE gets 0x97, a CONNECT asking for a durable session 0x97 (v3: 3); QoS 0
/// goes on; and once the store has room, all of it works again.
#[test]
fn a_full_store_refuses_new_durable_work_only() {
    let full = Rc::new(Cell::new(false));
    let mut b = on_disk_with(1, full.clone());
    let mut durable = connect("d", V5, false);
    durable.properties.session_expiry_interval_s = Some(300);
    let mut d = subscribed_durably(&mut b, durable, "t", QoS::AtLeastOnce);
    let (mut p, _) = b.connect(connect("p", V5, true));
    full.set(true);

    publish_qos1(&mut b, &mut p, "t", b"q1", 1);
    assert_eq!(
        b.received(&mut p),
        [Packet::PubAck(ack(1, ReasonCode::QuotaExceeded))]
    );
    assert!(b.publishes(&mut d).is_empty());
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"q0", QoS::AtMostOnce, None)),
    );
    assert_eq!(payloads(&b.publishes(&mut d)), [b"q0"]);

    b.send(&mut d, subscribe(2, &[("u", opts(QoS::AtLeastOnce))]));
    match &b.received(&mut d)[..] {
        [Packet::SubAck(s)] => assert_eq!(s.reason_codes, [ReasonCode::QuotaExceeded]),
        other => panic!("expected a SUBACK, got {other:?}"),
    }
    let mut refused = connect("e", V5, false);
    refused.properties.session_expiry_interval_s = Some(60);
    let (_, connack) = b.connect(refused);
    assert_eq!(connack.reason_code, ReasonCode::QuotaExceeded);
    let (mut v3, _) = b.connect(connect("v3", V311, true));
    publish_qos1(&mut b, &mut v3, "t", b"v3", 4);
    assert!(
        v3.closed,
        "a v3 publisher cannot be told no: it is disconnected"
    );

    full.set(false);
    publish_qos1(&mut b, &mut p, "t", b"q1", 5);
    sync(&mut b);
    assert_eq!(b.received(&mut p), [puback_ok(5)]);
    assert_eq!(payloads(&b.publishes(&mut d)), [b"q1"]);
}

/// Proves a subscriber's own PUBACK does not hold its output: the next QoS 1 message goes out
/// at once though the PUBACK made a record (the message released) that is not durable yet.
#[test]
fn a_subscribers_puback_does_not_hold_its_deliveries() {
    let mut b = on_disk(1);
    let mut d = subscribed_durably(&mut b, connect("d", V311, false), "t", QoS::AtLeastOnce);
    let (mut p, _) = b.connect(connect("p", V311, true));
    publish_qos1(&mut b, &mut p, "t", b"1", 1);
    let first = b.publishes(&mut d);
    sync(&mut b);
    b.send(
        &mut d,
        Packet::PubAck(ack(first[0].packet_id.unwrap().get(), ReasonCode::Success)),
    );
    let made = b.shards[0].records_made();
    publish_qos1(&mut b, &mut p, "t", b"2", 2);
    assert_eq!(
        payloads(&b.publishes(&mut d)),
        [b"2"],
        "not held behind the PUBACK's record"
    );
    assert!(
        b.shards[0].records_made() > made,
        "the PUBACK and the delivery made records"
    );
}
