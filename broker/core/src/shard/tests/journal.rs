//! The journal: every change to durable state, in order.

use super::*;

/// Records what the shard tells its journal, as text.
#[derive(Clone, Default)]
struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl crate::journal::Journal for Recorder {
    fn record(&mut self, record: crate::journal::Record<'_>) {
        use crate::journal::Record as R;
        let line = match record {
            R::Session {
                client_id,
                expiry_s,
                user_id,
                connected,
                ..
            } => {
                let state = if connected {
                    "connected"
                } else {
                    "disconnected"
                };
                format!(
                    "session {client_id} {expiry_s} {} {state}",
                    user_id.unwrap_or("-")
                )
            }
            R::SessionEnded { client_id } => format!("ended {client_id}"),
            R::Subscribed {
                client_id, filter, ..
            } => format!("subscribed {client_id} {filter}"),
            R::Unsubscribed { client_id, filter } => format!("unsubscribed {client_id} {filter}"),
            R::Will { client_id, will } => {
                format!("will {client_id} {}", will.map_or("-", |w| &*w.topic))
            }
            R::Stored {
                client_id, message, ..
            } => format!("stored {client_id} {}", message.id),
            R::Sent {
                client_id,
                id,
                packet_id,
            } => format!("sent {client_id} {id} {packet_id}"),
            R::Released { client_id, id } => format!("released {client_id} {id}"),
            R::PubRecReceived {
                client_id,
                packet_id,
            } => format!("pubrec {client_id} {packet_id}"),
            R::PubCompReceived {
                client_id,
                packet_id,
            } => format!("pubcomp {client_id} {packet_id}"),
            R::InboundQos2 {
                client_id,
                packet_id,
            } => format!("inbound {client_id} {packet_id}"),
            R::InboundReleased {
                client_id,
                packet_id,
            } => format!("inbound released {client_id} {packet_id}"),
            R::Retained { topic, message } => {
                format!("retained {topic} {}", !message.payload.is_empty())
            }
        };
        self.0.borrow_mut().push(line);
    }

    fn synchronous(&self) -> bool {
        true
    }
}

#[test]
fn the_journal_sees_every_change_to_durable_state() {
    let mut b = Broker::new(1);
    let journal = Recorder::default();
    b.shards[0].set_journal(Box::new(journal.clone()));
    let take = || std::mem::take(&mut *journal.0.borrow_mut());
    let (mut passing, _) = b.connect(connect("passing", V5, true));
    b.subscribe(&mut passing, &[("t", opts(QoS::AtLeastOnce))]);
    assert!(
        take().is_empty(),
        "a session that ends with its connection is not recorded"
    );

    let mut c = will_connect("d", Some(60), 100);
    c.clean_start = false;
    let (mut d, _) = b.connect(c.clone());
    assert_eq!(take(), ["session d 100 - connected", "will d will"]);
    b.subscribe(&mut d, &[("t", opts(QoS::AtLeastOnce))]);
    assert_eq!(take(), ["subscribed d t"]);
    b.disconnect(&mut d, ReasonCode::Success, None);
    assert_eq!(
        take(),
        ["session d 100 - disconnected", "will d -"],
        "a clean DISCONNECT drops the will; the expiry counts from here"
    );

    let (mut p, _) = b.connect(connect("p", V5, true));
    let mut m = publish("t", b"x", QoS::AtLeastOnce, Some(1));
    m.retain = true;
    b.send(&mut p, Packet::Publish(m));
    let records = take();
    let id = records[1].rsplit(' ').next().unwrap().to_string();
    assert_eq!(
        records,
        ["retained t true".to_string(), format!("stored d {id}")]
    );
    let (mut d, _) = b.connect(c);
    let got = b.publishes(&mut d);
    let sent = got[0].packet_id.unwrap();
    assert_eq!(
        take(),
        [
            "session d 100 - connected".to_string(),
            "will d will".to_string(),
            format!("sent d {id} {sent}")
        ],
        "the queued message goes out under a packet id the journal keeps"
    );
    b.send(
        &mut d,
        Packet::PubAck(ack(got[0].packet_id.unwrap().get(), ReasonCode::Success)),
    );
    assert_eq!(take(), [format!("released d {id}")]);
    let unsub = Unsubscribe {
        packet_id: pid(2),
        filters: vec!["t".into()],
        user_properties: vec![],
    };
    b.send(&mut d, Packet::Unsubscribe(unsub));
    assert_eq!(take(), ["unsubscribed d t"]);
    b.disconnect(&mut d, ReasonCode::Success, Some(0));
    assert_eq!(
        take(),
        ["ended d"],
        "expiry 0 at DISCONNECT ends the session with the connection"
    );
}

/// Proves the packet ids of QoS 2 flows are journaled in both directions for a durable
/// session, and not for one that ends with its connection.
#[test]
fn qos2_packet_ids_are_journaled_both_ways() {
    let mut b = Broker::new(1);
    let journal = Recorder::default();
    b.shards[0].set_journal(Box::new(journal.clone()));
    let take = || std::mem::take(&mut *journal.0.borrow_mut());
    let (mut d, _) = b.connect(connect("d", V311, false));
    b.subscribe(&mut d, &[("t", opts(QoS::ExactlyOnce))]);
    let (mut clean, _) = b.connect(connect("clean", V311, true));
    take();

    b.send(
        &mut clean,
        Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, Some(3))),
    );
    b.send(&mut clean, Packet::PubRel(ack(3, ReasonCode::Success)));
    let records = take();
    let id = records[0].rsplit(' ').next().unwrap().to_string();
    let out = b.publishes(&mut d)[0].packet_id.unwrap();
    assert_eq!(
        records,
        [format!("stored d {id}"), format!("sent d {id} {out}")],
        "the clean publisher's inbound id is not journaled"
    );
    b.send(&mut d, Packet::PubRec(ack(out.get(), ReasonCode::Success)));
    b.send(&mut d, Packet::PubComp(ack(out.get(), ReasonCode::Success)));
    assert_eq!(
        take(),
        [format!("pubrec d {out}"), format!("pubcomp d {out}")]
    );

    b.send(
        &mut d,
        Packet::Publish(publish("elsewhere", b"y", QoS::ExactlyOnce, Some(8))),
    );
    b.send(&mut d, Packet::PubRel(ack(8, ReasonCode::Success)));
    assert_eq!(take(), ["inbound d 8", "inbound released d 8"]);
}
