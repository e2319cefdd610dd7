//! Rebuilding durable state at start: the journal's records, read back in the order each shard
//! made them, folded into the sessions and retained messages they describe. The shards then
//! take each session on the shard that owns its client id now (`Shard::restore`), whatever the
//! shard count was when the records were made.
//!
//! The fold is forgiving where a crash can cut a sequence short: a record about a session,
//! message or packet id it does not know changes nothing (the records before it were lost with
//! a torn tail, or the session ended since). What a record describes is kept as the latest
//! record says: a session's expiry and will, its subscriptions by filter, its messages by id.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Instant;

use ironsight_codec::{PacketId, QoS, SubscriptionOptions};

use crate::journal::Record;
use crate::message::SharedMessage;
use crate::queue::{QueueBehavior, SubIds};
use crate::session::Will;

/// One session as the journal last described it.
#[derive(Debug)]
pub struct RecoveredSession {
    pub client_id: Box<str>,
    pub user_id: Option<Box<str>>,
    pub expiry_s: u32,
    /// Whether a connection served it when the records end (the broker stopped under it).
    pub connected: bool,
    /// When a disconnected session ends (`None`: never).
    pub expires_at: Option<Instant>,
    pub queue_max: u32,
    pub queue_behavior: QueueBehavior,
    pub will: Option<Will>,
    /// Its subscriptions: the text as subscribed (share prefix included), options, identifier.
    pub subscriptions: Vec<(Box<str>, SubscriptionOptions, Option<NonZeroU32>)>,
    /// QoS 1/2 messages stored and never sent, in the order they were stored.
    pub queued: Vec<RecoveredMessage>,
    /// Packet ids in flight, in the order they were sent: with the message (sent again, DUP
    /// set), or without once the client answered PUBREC (PUBREL is sent again).
    pub inflight: Vec<(PacketId, Option<RecoveredMessage>)>,
    /// The client's QoS 2 packet ids that wait for PUBREL.
    pub inbound_qos2: Vec<PacketId>,
}

/// A message a session holds, as it is to be delivered.
#[derive(Debug)]
pub struct RecoveredMessage {
    pub msg: SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: SubIds,
    /// The shared subscription (its share key) that chose this session for it.
    pub share: Option<Box<str>>,
}

/// The fold in progress.
#[derive(Default)]
pub struct Recovery {
    sessions: HashMap<Box<str>, Building>,
    retained: HashMap<Box<str>, SharedMessage>,
    /// The highest message counter seen (a message id's low bits).
    message_n_max: u64,
    records: u64,
}

/// A session being rebuilt: its messages by id, each with the order it was stored in and, once
/// sent, its packet id and the order it was sent in.
struct Building {
    session: RecoveredSession,
    subscriptions: HashMap<Box<str>, (SubscriptionOptions, Option<NonZeroU32>)>,
    messages: HashMap<u64, Held>,
    /// The message each outbound packet id in flight carries.
    sent: HashMap<PacketId, u64>,
    /// Packet ids answered with PUBREC, with the order they were sent in.
    awaiting_pubcomp: HashMap<PacketId, u64>,
    next_order: u64,
}

struct Held {
    message: RecoveredMessage,
    /// When it was stored, then (once sent) when it was sent: both from one counter.
    order: u64,
    packet_id: Option<PacketId>,
}

/// What the journal held, ready for the shards.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<RecoveredSession>,
    pub retained: Vec<SharedMessage>,
    /// Message counters start above this on every shard, so ids never repeat.
    pub message_n_max: u64,
    pub records: u64,
}

impl Recovery {
    /// Applies one record, read back in the order its shard made it.
    pub fn apply(&mut self, record: Record<'_>) {
        self.records += 1;
        match record {
            Record::Session {
                client_id,
                expiry_s,
                user_id,
                connected,
                expires_at,
                queue_max,
                queue_behavior,
            } => {
                let building = self
                    .sessions
                    .entry(client_id.into())
                    .or_insert_with(|| Building::new(client_id));
                let s = &mut building.session;
                s.user_id = user_id.map(Box::from);
                s.expiry_s = expiry_s;
                s.connected = connected;
                s.expires_at = expires_at;
                s.queue_max = queue_max;
                s.queue_behavior = queue_behavior;
            }
            Record::SessionEnded { client_id } => {
                self.sessions.remove(client_id);
            }
            Record::Subscribed {
                client_id,
                filter,
                options,
                id,
            } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    b.subscriptions.insert(filter.into(), (options, id));
                }
            }
            Record::Unsubscribed { client_id, filter } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    b.subscriptions.remove(filter);
                }
            }
            Record::Will { client_id, will } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    b.session.will = will.cloned();
                }
            }
            Record::Stored {
                client_id,
                message,
                qos,
                retain,
                sub_ids,
                share,
            } => {
                self.saw_message(message);
                if let Some(b) = self.sessions.get_mut(client_id) {
                    let mut ids = SubIds::None;
                    for &id in sub_ids {
                        ids.push(id);
                    }
                    let message = RecoveredMessage {
                        msg: message.clone(),
                        qos,
                        retain,
                        sub_ids: ids,
                        share: share.map(Box::from),
                    };
                    let held = Held {
                        message,
                        order: b.next_order(),
                        packet_id: None,
                    };
                    b.messages.insert(held.message.msg.id, held);
                }
            }
            Record::Sent {
                client_id,
                id,
                packet_id,
            } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    let order = b.next_order();
                    if let Some(held) = b.messages.get_mut(&id) {
                        held.packet_id = Some(packet_id);
                        held.order = order;
                        b.sent.insert(packet_id, id);
                    }
                }
            }
            Record::Released { client_id, id } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    b.release(id);
                }
            }
            Record::PubRecReceived {
                client_id,
                packet_id,
            } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    // Without a message sent under the id (a snapshot names the id alone), the
                    // id takes its place in the order here.
                    let id = b.sent.remove(&packet_id);
                    let order = match id.and_then(|id| b.messages.remove(&id)) {
                        Some(held) => held.order,
                        None => b.next_order(),
                    };
                    b.awaiting_pubcomp.insert(packet_id, order);
                }
            }
            Record::PubCompReceived {
                client_id,
                packet_id,
            } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    b.awaiting_pubcomp.remove(&packet_id);
                }
            }
            Record::InboundQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    if !b.session.inbound_qos2.contains(&packet_id) {
                        b.session.inbound_qos2.push(packet_id);
                    }
                }
            }
            Record::InboundReleased {
                client_id,
                packet_id,
            } => {
                if let Some(b) = self.sessions.get_mut(client_id) {
                    b.session.inbound_qos2.retain(|&p| p != packet_id);
                }
            }
            Record::Retained { topic, message } => {
                self.saw_message(message);
                self.retain(topic, message);
            }
        }
    }

    /// Keeps the newer of two updates of a topic (an empty payload is a clearing, kept until
    /// the end so that an older update read later does not bring the message back).
    fn retain(&mut self, topic: &str, message: &SharedMessage) {
        let newer = self
            .retained
            .get(topic)
            .is_none_or(|kept| kept.version() < message.version());
        if newer {
            self.retained.insert(topic.into(), message.clone());
        }
    }

    /// Takes in what another shard's journal held. Sessions are the shard's own (a client id
    /// belongs to one shard in a generation); retained updates are ordered by their versions.
    pub fn merge(&mut self, other: Recovery) {
        self.sessions.extend(other.sessions);
        for (topic, message) in &other.retained {
            self.retain(topic, message);
        }
        self.message_n_max = self.message_n_max.max(other.message_n_max);
        self.records += other.records;
    }

    fn saw_message(&mut self, message: &SharedMessage) {
        self.message_n_max = self
            .message_n_max
            .max(crate::message::message_n(message.id));
    }

    /// The sessions and retained messages the records describe.
    pub fn finish(self) -> Recovered {
        let sessions = self.sessions.into_values().map(Building::finish).collect();
        Recovered {
            sessions,
            retained: self
                .retained
                .into_values()
                .filter(|m| !m.payload.is_empty())
                .collect(),
            message_n_max: self.message_n_max,
            records: self.records,
        }
    }
}

impl Building {
    fn new(client_id: &str) -> Building {
        Building {
            session: RecoveredSession {
                client_id: client_id.into(),
                user_id: None,
                expiry_s: 0,
                connected: false,
                expires_at: None,
                queue_max: 0,
                queue_behavior: QueueBehavior::RejectNewMessages,
                will: None,
                subscriptions: Vec::new(),
                queued: Vec::new(),
                inflight: Vec::new(),
                inbound_qos2: Vec::new(),
            },
            subscriptions: HashMap::new(),
            messages: HashMap::new(),
            sent: HashMap::new(),
            awaiting_pubcomp: HashMap::new(),
            next_order: 0,
        }
    }

    fn next_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn release(&mut self, id: u64) {
        if let Some(held) = self.messages.remove(&id) {
            if let Some(pid) = held.packet_id {
                self.sent.remove(&pid);
            }
        }
    }

    fn finish(mut self) -> RecoveredSession {
        let mut queued = Vec::new();
        let mut inflight = Vec::new();
        for held in self.messages.into_values() {
            match held.packet_id {
                None => queued.push((held.order, held.message)),
                Some(pid) => inflight.push((held.order, pid, Some(held.message))),
            }
        }
        let answered = self.awaiting_pubcomp.into_iter();
        inflight.extend(answered.map(|(pid, order)| (order, pid, None)));
        queued.sort_unstable_by_key(|(order, _)| *order);
        inflight.sort_unstable_by_key(|(order, _, _)| *order);
        self.session.queued = queued.into_iter().map(|(_, m)| m).collect();
        self.session.inflight = inflight.into_iter().map(|(_, p, m)| (p, m)).collect();
        self.session.subscriptions = self
            .subscriptions
            .into_iter()
            .map(|(text, (options, id))| (text, options, id))
            .collect();
        self.session
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ironsight_codec::{Bytes, MessageProperties};

    use super::*;
    use crate::message::{message_id, Message};

    fn message(n: u64) -> SharedMessage {
        let mut m = Message::new(
            Instant::now(),
            "t".into(),
            Bytes::from_static(b"x"),
            QoS::ExactlyOnce,
            false,
            MessageProperties::default(),
            0,
        );
        m.id = message_id(1, n);
        Arc::new(m)
    }

    /// A clearing of a retained topic (an empty payload), the `n`-th message.
    fn cleared(n: u64) -> SharedMessage {
        let mut m = Message::new(
            Instant::now(),
            "t".into(),
            Bytes::new(),
            QoS::AtMostOnce,
            true,
            MessageProperties::default(),
            0,
        );
        m.id = message_id(1, n);
        Arc::new(m)
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn session(r: &mut Recovery, client_id: &str) {
        r.apply(Record::Session {
            client_id,
            expiry_s: 60,
            user_id: Some("alice"),
            connected: true,
            expires_at: None,
            queue_max: 100,
            queue_behavior: QueueBehavior::RejectNewMessages,
        });
    }

    fn stored(r: &mut Recovery, client_id: &str, m: &SharedMessage) {
        r.apply(Record::Stored {
            client_id,
            message: m,
            qos: QoS::ExactlyOnce,
            retain: false,
            sub_ids: &[],
            share: None,
        });
    }

    /// Proves the fold keeps what the last records say: unsent messages in stored order,
    /// messages in flight in sent order with their packet ids, a PUBREC'd id waiting for
    /// PUBCOMP in its place among them, released messages gone, inbound ids until PUBREL,
    /// subscriptions by filter; and that message counters resume above the highest id seen.
    #[test]
    fn the_last_word_stands() {
        let mut r = Recovery::default();
        session(&mut r, "d");
        let opts = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
        r.apply(Record::Subscribed {
            client_id: "d",
            filter: "a/#",
            options: opts,
            id: None,
        });
        r.apply(Record::Subscribed {
            client_id: "d",
            filter: "b",
            options: opts,
            id: None,
        });
        r.apply(Record::Unsubscribed {
            client_id: "d",
            filter: "b",
        });
        let (m1, m2, m3, m4) = (message(7), message(8), message(9), message(40));
        for m in [&m1, &m2, &m3, &m4] {
            stored(&mut r, "d", m);
        }
        for (m, p) in [(&m1, 1), (&m2, 2), (&m3, 3)] {
            r.apply(Record::Sent {
                client_id: "d",
                id: m.id,
                packet_id: pid(p),
            });
        }
        r.apply(Record::Released {
            client_id: "d",
            id: m1.id,
        });
        r.apply(Record::PubRecReceived {
            client_id: "d",
            packet_id: pid(2),
        });
        r.apply(Record::InboundQos2 {
            client_id: "d",
            packet_id: pid(5),
        });
        r.apply(Record::InboundQos2 {
            client_id: "d",
            packet_id: pid(6),
        });
        r.apply(Record::InboundReleased {
            client_id: "d",
            packet_id: pid(5),
        });
        let recovered = r.finish();
        assert_eq!(recovered.message_n_max, 40);
        let [d] = &recovered.sessions[..] else {
            panic!("one session: {:?}", recovered.sessions)
        };
        assert_eq!(d.user_id.as_deref(), Some("alice"));
        let queued: Vec<_> = d.queued.iter().map(|m| m.msg.id).collect();
        assert_eq!(queued, [m4.id]);
        let inflight: Vec<_> = d
            .inflight
            .iter()
            .map(|(p, m)| (*p, m.as_ref().map(|m| m.msg.id)))
            .collect();
        assert_eq!(inflight, [(pid(2), None), (pid(3), Some(m3.id))]);
        assert_eq!(d.inbound_qos2, [pid(6)]);
        let filters: Vec<_> = d.subscriptions.iter().map(|s| &*s.0).collect();
        assert_eq!(filters, ["a/#"]);
    }

    /// Proves an ended session is gone with everything it held, records about unknown
    /// sessions change nothing, and retained messages follow their last record.
    #[test]
    fn ended_and_unknown_sessions_leave_nothing() {
        let mut r = Recovery::default();
        session(&mut r, "gone");
        stored(&mut r, "gone", &message(1));
        r.apply(Record::SessionEnded { client_id: "gone" });
        stored(&mut r, "never", &message(2));
        r.apply(Record::Released {
            client_id: "never",
            id: 2,
        });
        let kept = message(3);
        r.apply(Record::Retained {
            topic: "r/1",
            message: &kept,
        });
        r.apply(Record::Retained {
            topic: "r/2",
            message: &message(4),
        });
        r.apply(Record::Retained {
            topic: "r/2",
            message: &cleared(5),
        });
        let recovered = r.finish();
        assert!(recovered.sessions.is_empty());
        assert_eq!(recovered.retained.len(), 1);
        assert_eq!(recovered.retained[0].id, kept.id);
        assert_eq!(recovered.records, 8);
    }

    /// Proves retained updates of one topic recorded by different shards are ordered by their
    /// versions, not by the order the journals are read in: a clearing newer than a message
    /// read later still wins, and an older update does not replace a newer one.
    #[test]
    fn retained_updates_from_several_journals_keep_the_newest() {
        let (older, newer, clearing) = (message(1), message(2), cleared(3));
        let mut first = Recovery::default();
        first.apply(Record::Retained {
            topic: "a",
            message: &clearing,
        });
        first.apply(Record::Retained {
            topic: "b",
            message: &newer,
        });
        let mut second = Recovery::default();
        second.apply(Record::Retained {
            topic: "a",
            message: &older,
        });
        second.apply(Record::Retained {
            topic: "b",
            message: &older,
        });
        first.merge(second);
        let recovered = first.finish();
        let kept: Vec<_> = recovered.retained.iter().map(|m| m.id).collect();
        assert_eq!(kept, [newer.id]);
        assert_eq!(recovered.message_n_max, 3);
    }
}
