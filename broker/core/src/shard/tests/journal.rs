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
            } => format!("session {client_id} {expiry_s}"),
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
            R::Released { client_id, id } => format!("released {client_id} {id}"),
            R::Retained { topic, message } => format!("retained {topic} {}", message.is_some()),
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
    assert_eq!(take(), ["session d 100", "will d will"]);
    b.subscribe(&mut d, &[("t", opts(QoS::AtLeastOnce))]);
    assert_eq!(take(), ["subscribed d t"]);
    b.disconnect(&mut d, ReasonCode::Success, None);
    assert_eq!(
        take(),
        ["session d 100", "will d -"],
        "a clean DISCONNECT drops the will"
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
    take();
    let got = b.publishes(&mut d);
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
