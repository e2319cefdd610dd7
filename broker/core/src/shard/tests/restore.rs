//! Restarts: a broker's journal records folded by `recovery::Recovery` and restored into a new
//! broker, with as many shards or a different number, the clock moved on by the downtime.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::journal::{Journal, Record};
use crate::recovery::Recovery;
use crate::shard::SnapshotCursor;

/// A journal that folds every record into a shared [`Recovery`] as it is made: what a journal
/// on disk would give back at start.
struct IntoRecovery(Rc<RefCell<Recovery>>);

impl Journal for IntoRecovery {
    fn record(&mut self, record: Record<'_>) {
        self.0.borrow_mut().apply(record);
    }

    fn synchronous(&self) -> bool {
        true
    }
}

fn journaled(shards: u16) -> (Broker, Rc<RefCell<Recovery>>) {
    let mut b = Broker::new(shards);
    let recovery = Rc::new(RefCell::new(Recovery::default()));
    for shard in &mut b.shards {
        shard.set_journal(Box::new(IntoRecovery(recovery.clone())));
    }
    (b, recovery)
}

/// The broker after a crash `down_s` seconds long: a new one with `shards` shards, restored as
/// the server does at start (each session on its owner, retained messages on every shard,
/// message ids after the highest), journaling into a new recovery.
fn restart(
    old: &Broker,
    recovery: &Rc<RefCell<Recovery>>,
    shards: u16,
    down_s: u64,
) -> (Broker, Rc<RefCell<Recovery>>) {
    let recovered = std::mem::take(&mut *recovery.borrow_mut()).finish();
    let (mut b, next) = journaled(shards);
    b.now = old.now + Duration::from_secs(down_s);
    for session in recovered.sessions {
        let owner = b.shards[0].owner_of(&session.client_id) as usize;
        b.shards[owner].restore(b.now, session);
    }
    for shard in &mut b.shards {
        for msg in &recovered.retained {
            shard.restore_retained(msg);
        }
        shard.resume_message_ids(recovered.message_n_max);
    }
    (b, next)
}

fn resume(id: &str) -> Connect {
    let mut c = connect(id, V5, false);
    c.properties.session_expiry_interval_s = Some(300);
    c
}

/// Proves a persistent session comes back after a restart onto another shard count with its
/// subscriptions (plain and shared) and the QoS 1 and QoS 2 messages queued for it while it
/// was away, in order; retained messages come back; new message ids follow the old ones.
#[test]
fn sessions_and_what_they_hold_survive_a_restart() {
    for (before, after) in [(1, 1), (1, 3), (3, 2)] {
        let (mut a, recovery) = journaled(before);
        let (mut d, _) = a.connect(resume("d"));
        a.subscribe(
            &mut d,
            &[
                ("t", opts(QoS::AtLeastOnce)),
                ("s", opts(QoS::ExactlyOnce)),
                ("$share/g/x", opts(QoS::AtLeastOnce)),
            ],
        );
        a.drop_connection(&mut d);
        let (mut p, _) = a.connect(connect("p", V5, true));
        for (topic, qos, n) in [
            ("t", QoS::AtLeastOnce, 1),
            ("s", QoS::ExactlyOnce, 2),
            ("t", QoS::AtLeastOnce, 3),
            ("x", QoS::AtLeastOnce, 4),
        ] {
            a.send(
                &mut p,
                Packet::Publish(publish(topic, &[n], qos, Some(u16::from(n)))),
            );
        }
        let mut r = publish("r", b"kept", QoS::AtLeastOnce, Some(9));
        r.retain = true;
        a.send(&mut p, Packet::Publish(r));
        a.received(&mut p);

        let (mut b, _) = restart(&a, &recovery, after, 30);
        let (mut d, connack) = b.connect(resume("d"));
        assert!(connack.session_present, "{before} -> {after} shards");
        let got = b.publishes(&mut d);
        assert_eq!(payloads(&got), [[1], [2], [3], [4]], "{before} -> {after}");
        assert_eq!(got[1].qos, QoS::ExactlyOnce);

        let (mut p, _) = b.connect(connect("p2", V5, true));
        b.send(
            &mut p,
            Packet::Publish(publish("t", b"new", QoS::AtMostOnce, None)),
        );
        assert_eq!(payloads(&b.publishes(&mut d)), [b"new"], "still subscribed");
        let (mut n, _) = b.connect(connect("n", V5, true));
        b.subscribe(&mut n, &[("r", opts(QoS::AtLeastOnce))]);
        assert_eq!(payloads(&b.publishes(&mut n)), [b"kept"], "retained");
    }
}

/// Proves packet ids in flight survive in both directions: an unacknowledged QoS 1 message
/// comes again with its id and DUP, a QoS 2 message the client answered with PUBREC gets its
/// PUBREL again, and the client's own QoS 2 PUBLISH sent again before PUBREL is acknowledged
/// without being routed a second time (exactly once across the restart).
#[test]
fn packet_ids_in_flight_survive_a_restart() {
    let (mut a, recovery) = journaled(2);
    let (mut d, _) = a.connect(resume("d"));
    a.subscribe(
        &mut d,
        &[("t", opts(QoS::AtLeastOnce)), ("s", opts(QoS::ExactlyOnce))],
    );
    let (mut watcher, _) = a.connect(resume("w"));
    a.subscribe(&mut watcher, &[("x", opts(QoS::AtLeastOnce))]);
    let (mut p, _) = a.connect(connect("p", V5, true));
    a.send(
        &mut p,
        Packet::Publish(publish("t", b"one", QoS::AtLeastOnce, Some(1))),
    );
    a.send(
        &mut p,
        Packet::Publish(publish("s", b"two", QoS::ExactlyOnce, Some(2))),
    );
    let got = a.publishes(&mut d);
    let (qos1, qos2) = (got[0].packet_id.unwrap(), got[1].packet_id.unwrap());
    a.send(&mut d, Packet::PubRec(ack(qos2.get(), ReasonCode::Success)));
    assert_eq!(
        a.received(&mut d),
        [Packet::PubRel(ack(qos2.get(), ReasonCode::Success))]
    );
    a.send(
        &mut d,
        Packet::Publish(publish("x", b"once", QoS::ExactlyOnce, Some(7))),
    );
    assert_eq!(
        a.received(&mut d),
        [Packet::PubRec(ack(7, ReasonCode::Success))]
    );
    let seen = a.publishes(&mut watcher);
    assert_eq!(payloads(&seen), [b"once"]);
    let seen_pid = seen[0].packet_id.unwrap().get();
    a.send(
        &mut watcher,
        Packet::PubAck(ack(seen_pid, ReasonCode::Success)),
    );

    let (mut b, _) = restart(&a, &recovery, 2, 5);
    let (mut d, connack) = b.connect(resume("d"));
    assert!(connack.session_present);
    let again = b.received(&mut d);
    match &again[..] {
        [Packet::Publish(p), Packet::PubRel(rel)] => {
            assert_eq!(
                (p.packet_id, p.dup, &p.payload[..]),
                (Some(qos1), true, &b"one"[..])
            );
            assert_eq!(rel.packet_id, qos2);
        }
        other => panic!("expected the PUBLISH and the PUBREL again, got {other:?}"),
    }
    let mut dup = publish("x", b"once", QoS::ExactlyOnce, Some(7));
    dup.dup = true;
    b.send(&mut d, Packet::Publish(dup));
    assert_eq!(
        b.received(&mut d),
        [Packet::PubRec(ack(7, ReasonCode::Success))]
    );
    b.send(&mut d, Packet::PubRel(ack(7, ReasonCode::Success)));
    assert_eq!(
        b.received(&mut d),
        [Packet::PubComp(ack(7, ReasonCode::Success))]
    );
    let (mut watcher, _) = b.connect(resume("w"));
    assert!(
        b.publishes(&mut watcher).is_empty(),
        "delivered once, before the restart"
    );
}

/// Proves deadlines keep counting while the broker is down: a session whose expiry passed
/// during the downtime is gone after the first tick, its delayed will published then; one
/// still within its expiry keeps its will until its delay passes; and a session that was
/// connected when the broker stopped counts its expiry from the restart.
#[test]
fn deadlines_pass_while_the_broker_is_down() {
    let (mut a, recovery) = journaled(1);
    let (mut short, _) = a.connect(will_connect("short", Some(100), 10));
    a.drop_connection(&mut short);
    let (mut long, _) = a.connect(will_connect("long", Some(100), 1000));
    a.drop_connection(&mut long);
    let (_up, _) = a.connect(will_connect("up", Some(100), 20));

    let (mut b, _) = restart(&a, &recovery, 1, 60);
    let mut w = watcher(&mut b);
    b.advance(1.0);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "short's will, late"
    );
    let (_, connack) = b.connect(will_connect("short", None, 10));
    assert!(
        !connack.session_present,
        "short expired while the broker was down"
    );
    b.advance(15.0);
    assert!(
        b.publishes(&mut w).is_empty(),
        "up's expiry counts from the restart"
    );
    b.advance(10.0);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "up's will at its expiry"
    );
    b.advance(20.0);
    assert_eq!(
        payloads(&b.publishes(&mut w)),
        [b"bye"],
        "long's will after its delay"
    );
}

/// Proves a snapshot holds what the shard holds: a broker restored from records, then
/// restored again from nothing but the snapshot it wrote at start, gives a resuming client
/// the same things: its message in flight with its id, its PUBREL, its queued messages, and
/// the retained message once.
#[test]
fn a_snapshot_is_the_state_it_was_taken_of() {
    let (mut a, recovery) = journaled(2);
    let (mut d, _) = a.connect(resume("d"));
    a.subscribe(
        &mut d,
        &[("t", opts(QoS::AtLeastOnce)), ("s", opts(QoS::ExactlyOnce))],
    );
    let (mut p, _) = a.connect(connect("p", V5, true));
    a.send(
        &mut p,
        Packet::Publish(publish("t", b"1", QoS::AtLeastOnce, Some(1))),
    );
    a.send(
        &mut p,
        Packet::Publish(publish("s", b"2", QoS::ExactlyOnce, Some(2))),
    );
    let got = a.publishes(&mut d);
    let (first, second) = (got[0].packet_id.unwrap(), got[1].packet_id.unwrap());
    a.send(
        &mut d,
        Packet::PubRec(ack(second.get(), ReasonCode::Success)),
    );
    a.drop_connection(&mut d);
    a.send(
        &mut p,
        Packet::Publish(publish("t", b"3", QoS::AtLeastOnce, Some(3))),
    );
    let mut r = publish("r", b"kept", QoS::AtMostOnce, None);
    r.retain = true;
    a.send(&mut p, Packet::Publish(r));

    let (mut b, snapshot) = restart(&a, &recovery, 3, 1);
    for shard in &mut b.shards {
        let mut cursor = SnapshotCursor::default();
        while !shard.snapshot_slice(&mut cursor, usize::MAX) {}
    }
    let (mut c, _) = restart(&b, &snapshot, 2, 1);
    let (mut d, connack) = c.connect(resume("d"));
    assert!(connack.session_present);
    match &c.received(&mut d)[..] {
        [Packet::Publish(one), Packet::PubRel(rel), Packet::Publish(three)] => {
            assert_eq!(
                (one.packet_id, one.dup, &one.payload[..]),
                (Some(first), true, &b"1"[..])
            );
            assert_eq!(rel.packet_id, second);
            assert_eq!(&three.payload[..], b"3");
        }
        other => panic!("expected PUBLISH 1 again, PUBREL, PUBLISH 3; got {other:?}"),
    }
    let (mut n, _) = c.connect(connect("n", V5, true));
    c.subscribe(&mut n, &[("r", opts(QoS::AtMostOnce))]);
    assert_eq!(payloads(&c.publishes(&mut n)), [b"kept"]);
}

/// Proves compaction's snapshot, taken in slices while clients come and go, is enough on its
/// own: the records before it are dropped (as compaction removes the older segments), and a
/// restart from the snapshot's records and those made meanwhile gives every session what it
/// had: messages queued before and during the snapshot, acknowledgements made during it, a
/// session ended and one begun during it, retained messages set and cleared during it.
#[test]
fn a_snapshot_in_slices_stands_in_for_the_history_before_it() {
    let (mut a, recovery) = journaled(2);
    let mut p = a.connect(connect("p", V5, true)).0;
    let publish_t = |a: &mut Broker, p: &mut Client, n: u8| {
        a.send(
            p,
            Packet::Publish(publish("t", &[n], QoS::AtLeastOnce, Some(u16::from(n) + 1))),
        );
    };
    for id in ["d1", "d2", "d3"] {
        let (mut d, _) = a.connect(resume(id));
        a.subscribe(&mut d, &[("t", opts(QoS::AtLeastOnce))]);
        a.drop_connection(&mut d);
    }
    publish_t(&mut a, &mut p, 1);
    let mut r = publish("r", b"old", QoS::AtMostOnce, None);
    r.retain = true;
    a.send(&mut p, Packet::Publish(r));

    // Compaction begins: what the journal held so far is dropped once the snapshot is done.
    drop(std::mem::take(&mut *recovery.borrow_mut()));
    let mut cursors: Vec<_> = (0..2)
        .map(|_| crate::shard::SnapshotCursor::default())
        .collect();
    let mut slice = |a: &mut Broker| {
        let mut done = true;
        for (shard, cursor) in a.shards.iter_mut().zip(&mut cursors) {
            done &= shard.snapshot_slice(cursor, 1);
        }
        done
    };
    slice(&mut a);
    publish_t(&mut a, &mut p, 2);
    let (mut d2, _) = a.connect(resume("d2"));
    for got in a.publishes(&mut d2) {
        a.send(
            &mut d2,
            Packet::PubAck(ack(got.packet_id.unwrap().get(), ReasonCode::Success)),
        );
    }
    a.drop_connection(&mut d2);
    slice(&mut a);
    let mut gone = resume("d3");
    gone.clean_start = true;
    gone.properties.session_expiry_interval_s = Some(0);
    a.connect(gone);
    let (mut d4, _) = a.connect(resume("d4"));
    a.subscribe(&mut d4, &[("t", opts(QoS::AtLeastOnce))]);
    a.drop_connection(&mut d4);
    let mut clear = publish("r", b"", QoS::AtMostOnce, None);
    clear.retain = true;
    a.send(&mut p, Packet::Publish(clear));
    let mut r2 = publish("r2", b"new", QoS::AtMostOnce, None);
    r2.retain = true;
    a.send(&mut p, Packet::Publish(r2));
    publish_t(&mut a, &mut p, 3);
    while !slice(&mut a) {}

    let (mut b, _) = restart(&a, &recovery, 2, 1);
    let expect = [
        ("d1", vec![[1], [2], [3]]),
        ("d2", vec![[3]]),
        ("d4", vec![[3]]),
    ];
    for (id, payloads_expected) in expect {
        let (mut d, connack) = b.connect(resume(id));
        assert!(connack.session_present, "{id}");
        assert_eq!(payloads(&b.publishes(&mut d)), payloads_expected, "{id}");
    }
    let (_, connack) = b.connect(resume("d3"));
    assert!(!connack.session_present, "d3 ended during the snapshot");
    let (mut n, _) = b.connect(connect("n", V5, true));
    b.subscribe(
        &mut n,
        &[("r", opts(QoS::AtMostOnce)), ("r2", opts(QoS::AtMostOnce))],
    );
    assert_eq!(payloads(&b.publishes(&mut n)), [b"new"]);
}
