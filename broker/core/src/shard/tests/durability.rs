//! Output held until the journal's records are durable (`shard/durability.rs`), with a journal
//! that is "on disk": its records are durable only when the test says so.

use super::*;
use crate::journal::{Journal, Record};

/// A journal whose records become durable only when the test calls [`sync`].
struct OnDisk;

impl Journal for OnDisk {
    fn record(&mut self, _record: Record<'_>) {}

    fn synchronous(&self) -> bool {
        false
    }
}

fn on_disk(shards: u16) -> Broker {
    let mut b = Broker::new(shards);
    for shard in &mut b.shards {
        shard.set_journal(Box::new(OnDisk));
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
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, Some(7))),
    );
    assert_eq!(
        b.publishes(&mut d).len(),
        1,
        "a QoS 1 delivery goes at once"
    );
    assert!(b.received(&mut p).is_empty(), "PUBACK held");
    sync(&mut b);
    assert_eq!(
        b.received(&mut p),
        [Packet::PubAck(ack(7, ReasonCode::Success))]
    );
}

/// Proves a QoS 1 PUBLISH that stores nothing durable is acknowledged at once, even while
/// another connection waits for the disk; and that one connection's acknowledgements keep
/// their order when the first waits and the second would not.
#[test]
fn only_what_made_records_waits_and_order_holds() {
    let mut b = on_disk(1);
    let mut d = connect_raw(&mut b, connect("d", V311, false));
    b.send(&mut d, subscribe(1, &[("durable", opts(QoS::AtLeastOnce))]));
    sync(&mut b);
    b.received(&mut d);
    let (mut clean, _) = b.connect(connect("clean", V311, true));
    b.subscribe(&mut clean, &[("passing", opts(QoS::AtLeastOnce))]);

    let (mut p, _) = b.connect(connect("p", V311, true));
    b.send(
        &mut p,
        Packet::Publish(publish("passing", b"x", QoS::AtLeastOnce, Some(1))),
    );
    assert_eq!(
        b.received(&mut p),
        [Packet::PubAck(ack(1, ReasonCode::Success))]
    );

    b.send(
        &mut p,
        Packet::Publish(publish("durable", b"x", QoS::AtLeastOnce, Some(2))),
    );
    b.send(
        &mut p,
        Packet::Publish(publish("passing", b"x", QoS::AtLeastOnce, Some(3))),
    );
    assert!(
        b.received(&mut p).is_empty(),
        "the second waits behind the first"
    );
    sync(&mut b);
    assert_eq!(
        b.received(&mut p),
        [
            Packet::PubAck(ack(2, ReasonCode::Success)),
            Packet::PubAck(ack(3, ReasonCode::Success))
        ]
    );
}

/// Proves a QoS 2 message is not sent to a durable session before its record is durable (a
/// crash must not forget a packet id the subscriber has seen), and that PUBREC and PUBCOMP
/// of the publisher's flow wait for the disk too.
#[test]
fn qos2_waits_in_both_directions() {
    let mut b = on_disk(1);
    let mut d = connect_raw(&mut b, connect("d", V311, false));
    b.send(&mut d, subscribe(1, &[("t", opts(QoS::ExactlyOnce))]));
    sync(&mut b);
    b.received(&mut d);

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
    let mut d = connect_raw(&mut b, connect(sub_id, V311, false));
    b.send(&mut d, subscribe(1, &[("t", opts(QoS::AtLeastOnce))]));
    sync(&mut b);
    b.received(&mut d);

    let (mut p, _) = b.connect(connect(&pub_id, V311, true));
    b.send(
        &mut p,
        Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, Some(9))),
    );
    let made = b.shards[pub_shard].records_made();
    b.shards[pub_shard].durable(made);
    assert!(
        b.received(&mut p).is_empty(),
        "the subscriber's shard has not synced"
    );
    sync(&mut b);
    assert_eq!(
        b.received(&mut p),
        [Packet::PubAck(ack(9, ReasonCode::Success))]
    );
    assert_eq!(b.publishes(&mut d).len(), 1);
}
