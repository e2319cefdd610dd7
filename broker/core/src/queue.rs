//! Per-session delivery state: the bounded queue of messages waiting to be sent, the in-flight
//! window of QoS 1/2 messages sent and not yet acknowledged, and the inbound QoS 2 packet ids
//! waiting for PUBREL. Everything here is plain data: the shard decides when to send.
//!
//! Invariants: `queue.len() + inflight.len()` never exceeds the session's `MaxMessages` after an
//! enqueue; packet ids in `inflight` are unique and non-zero; an entry in `AwaitingPubComp` no
//! longer holds its message (the receiver owns it after PUBREC).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Instant;

use ironsight_codec::{PacketId, QoS};

use crate::message::SharedMessage;

/// Index of a shared-subscription group in the shard's table.
pub type ShareId = u32;

/// Subscription identifiers to put on one delivery ([MQTT-3.3.4-3]); `None` is the common case
/// and costs no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SubIds {
    #[default]
    None,
    One(NonZeroU32),
    Many(Box<[NonZeroU32]>),
}

impl SubIds {
    pub fn push(&mut self, id: NonZeroU32) {
        *self = match std::mem::take(self) {
            SubIds::None => SubIds::One(id),
            SubIds::One(first) if first == id => SubIds::One(first),
            SubIds::One(first) => SubIds::Many(Box::new([first, id])),
            SubIds::Many(ids) if ids.contains(&id) => SubIds::Many(ids),
            SubIds::Many(ids) => {
                let mut ids = ids.into_vec();
                ids.push(id);
                SubIds::Many(ids.into_boxed_slice())
            }
        }
    }

    pub fn as_slice(&self) -> &[NonZeroU32] {
        match self {
            SubIds::None => &[],
            SubIds::One(id) => std::slice::from_ref(id),
            SubIds::Many(ids) => ids,
        }
    }
}

/// One message on its way to one session.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub msg: SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: SubIds,
    /// Set when the message reached this session through a shared subscription, so that it can be
    /// given to another member if this one leaves before acknowledging it.
    pub share: Option<ShareId>,
}

impl Outgoing {
    /// This delivery as an [`Offer`] borrowing the message.
    pub fn offer(&self) -> Offer<'_> {
        Offer {
            msg: &self.msg,
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            share: self.share,
        }
    }
}

/// A delivery about to be made: an [`Outgoing`] that borrows its message. A delivery written
/// straight to a socket never touches the message's reference count, which every shard
/// delivering the same message would otherwise contend on; only a delivery that has to wait (in
/// the queue or the in-flight window) takes a reference, with [`Offer::to_outgoing`].
#[derive(Debug)]
pub struct Offer<'a> {
    pub msg: &'a SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: SubIds,
    pub share: Option<ShareId>,
}

impl Offer<'_> {
    pub fn to_outgoing(self) -> Outgoing {
        Outgoing {
            msg: self.msg.clone(),
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids,
            share: self.share,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflightState {
    AwaitingPubAck,
    AwaitingPubRec,
    AwaitingPubComp,
}

#[derive(Debug)]
pub struct Inflight {
    pub pid: PacketId,
    pub state: InflightState,
    /// `None` once PUBREC has arrived.
    pub out: Option<Outgoing>,
}

/// What MessageSight calls `MaxMessagesBehavior`: which message loses when a session's buffer is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBehavior {
    /// Keep what is buffered; the new message is not accepted (v5 publishers see 0x97).
    RejectNewMessages,
    /// Drop the oldest message not yet sent to make room for the new one.
    DiscardOldMessages,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Accepted,
    /// Accepted by dropping the oldest queued message (its id).
    DiscardedOldest(u64),
    Rejected,
}

#[derive(Debug, Default)]
pub struct Delivery {
    pub queue: VecDeque<Outgoing>,
    pub inflight: VecDeque<Inflight>,
    /// Inbound QoS 2 packet ids that were PUBREC'd and wait for PUBREL (exactly-once receipt).
    pub inbound_qos2: Vec<PacketId>,
    next_pid: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckError {
    /// The packet id is not in flight (v5 answers 0x92 on PUBREL; acks are otherwise ignored).
    UnknownPacketId,
    /// The ack does not fit the packet's state, e.g. PUBACK for a QoS 2 message.
    WrongState,
}

impl Delivery {
    /// Messages held for the session: counted against `MaxMessages`.
    pub fn buffered(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.inflight.is_empty() && self.inbound_qos2.is_empty()
    }

    pub fn enqueue(&mut self, out: Outgoing, max: usize, behavior: QueueBehavior) -> Enqueued {
        if self.buffered() < max {
            self.queue.push_back(out);
            return Enqueued::Accepted;
        }
        match behavior {
            QueueBehavior::DiscardOldMessages if !self.queue.is_empty() => {
                let oldest = self.queue.pop_front().expect("not empty");
                self.queue.push_back(out);
                Enqueued::DiscardedOldest(oldest.msg.id)
            }
            _ => Enqueued::Rejected,
        }
    }

    /// Takes the oldest queued message if it has expired.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Outgoing> {
        if self.queue.front()?.msg.is_expired(now) {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// Allocates a packet id not in flight and records the message as sent.
    pub fn start(&mut self, out: Outgoing) -> PacketId {
        assert!(
            out.qos != QoS::AtMostOnce,
            "QoS 0 messages are never in flight"
        );
        assert!(
            self.inflight.len() < usize::from(u16::MAX),
            "packet ids exhausted"
        );
        let pid = loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = PacketId::new(self.next_pid) else {
                continue;
            };
            if !self.inflight.iter().any(|f| f.pid == pid) {
                break pid;
            }
        };
        let state = match out.qos {
            QoS::AtLeastOnce => InflightState::AwaitingPubAck,
            _ => InflightState::AwaitingPubRec,
        };
        self.inflight.push_back(Inflight {
            pid,
            state,
            out: Some(out),
        });
        pid
    }

    fn position(&self, pid: PacketId) -> Option<usize> {
        // Acks nearly always come in order: the front is the first place to look.
        self.inflight.iter().position(|f| f.pid == pid)
    }

    /// PUBACK: the QoS 1 message is delivered.
    pub fn puback(&mut self, pid: PacketId) -> Result<Outgoing, AckError> {
        let at = self.position(pid).ok_or(AckError::UnknownPacketId)?;
        if self.inflight[at].state != InflightState::AwaitingPubAck {
            return Err(AckError::WrongState);
        }
        let entry = self.inflight.remove(at).expect("position is in range");
        Ok(entry
            .out
            .expect("a QoS 1 entry holds its message until PUBACK"))
    }

    /// PUBREC: the receiver owns the message, which is returned; the id stays in flight until
    /// PUBCOMP. A PUBREC with an error reason ends the flow (the sender treats it as delivered).
    /// A duplicate PUBREC returns `None` (it is answered with PUBREL again).
    pub fn pubrec(&mut self, pid: PacketId, accepted: bool) -> Result<Option<Outgoing>, AckError> {
        let at = self.position(pid).ok_or(AckError::UnknownPacketId)?;
        match self.inflight[at].state {
            InflightState::AwaitingPubRec if accepted => {
                let entry = &mut self.inflight[at];
                entry.state = InflightState::AwaitingPubComp;
                Ok(entry.out.take())
            }
            InflightState::AwaitingPubRec => Ok(self.inflight.remove(at).and_then(|e| e.out)),
            InflightState::AwaitingPubComp => Ok(None),
            InflightState::AwaitingPubAck => Err(AckError::WrongState),
        }
    }

    /// Gives up a message in flight that will not be sent again; its id is free.
    pub fn drop_inflight(&mut self, pid: PacketId) -> Option<Outgoing> {
        let at = self.position(pid)?;
        self.inflight.remove(at).and_then(|entry| entry.out)
    }

    /// PUBCOMP: the QoS 2 flow is complete.
    pub fn pubcomp(&mut self, pid: PacketId) -> Result<(), AckError> {
        let at = self.position(pid).ok_or(AckError::UnknownPacketId)?;
        if self.inflight[at].state != InflightState::AwaitingPubComp {
            return Err(AckError::WrongState);
        }
        self.inflight.remove(at);
        Ok(())
    }

    /// Removes the messages that came through `share` for re-dispatch to the other members of
    /// the group: the queued ones, and with `with_inflight` (the session is ending) the QoS 1
    /// ones in flight. QoS 2 messages in flight stay: a QoS 2 message goes to no other member
    /// once sent to one ([MQTT-4.8.2-4], [MQTT-4.8.2-5]).
    pub fn take_shared(&mut self, share: ShareId, with_inflight: bool) -> Vec<Outgoing> {
        let mut taken = Vec::new();
        if with_inflight {
            self.inflight.retain_mut(|f| match &f.out {
                Some(out) if out.share == Some(share) && out.qos == QoS::AtLeastOnce => {
                    taken.push(f.out.take().expect("matched Some"));
                    false
                }
                _ => true,
            });
        }
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for out in self.queue.drain(..) {
            if out.share == Some(share) {
                taken.push(out);
            } else {
                kept.push_back(out);
            }
        }
        self.queue = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use ironsight_codec::{Bytes, MessageProperties};
    use std::sync::Arc;

    fn out(n: u8, qos: QoS) -> Outgoing {
        let msg = Message::new(
            Instant::now(),
            "t".into(),
            Bytes::from(vec![n]),
            qos,
            false,
            MessageProperties::default(),
            0,
        );
        Outgoing {
            msg: Arc::new(msg),
            qos,
            retain: false,
            sub_ids: SubIds::None,
            share: None,
        }
    }

    fn payloads(d: &Delivery) -> Vec<u8> {
        d.queue.iter().map(|o| o.msg.payload[0]).collect()
    }

    #[test]
    fn reject_keeps_the_oldest() {
        let mut d = Delivery::default();
        for n in 0..5 {
            let expected = if n < 3 {
                Enqueued::Accepted
            } else {
                Enqueued::Rejected
            };
            assert_eq!(
                d.enqueue(
                    out(n, QoS::AtLeastOnce),
                    3,
                    QueueBehavior::RejectNewMessages
                ),
                expected
            );
        }
        assert_eq!(payloads(&d), [0, 1, 2]);
    }

    #[test]
    fn discard_keeps_the_newest() {
        let mut d = Delivery::default();
        for n in 0..5 {
            d.enqueue(
                out(n, QoS::AtLeastOnce),
                3,
                QueueBehavior::DiscardOldMessages,
            );
        }
        assert_eq!(payloads(&d), [2, 3, 4]);
    }

    #[test]
    fn in_flight_messages_count_against_the_limit() {
        let mut d = Delivery::default();
        d.start(out(0, QoS::AtLeastOnce));
        d.start(out(1, QoS::AtLeastOnce));
        assert_eq!(
            d.enqueue(
                out(2, QoS::AtLeastOnce),
                3,
                QueueBehavior::RejectNewMessages
            ),
            Enqueued::Accepted
        );
        assert_eq!(
            d.enqueue(
                out(3, QoS::AtLeastOnce),
                3,
                QueueBehavior::RejectNewMessages
            ),
            Enqueued::Rejected
        );
        // Discarding can only drop what was not sent yet.
        assert_eq!(
            d.enqueue(
                out(4, QoS::AtLeastOnce),
                3,
                QueueBehavior::DiscardOldMessages
            ),
            Enqueued::DiscardedOldest(0)
        );
        assert_eq!(payloads(&d), [4]);
    }

    #[test]
    fn qos1_flow_and_unknown_ids() {
        let mut d = Delivery::default();
        let a = d.start(out(0, QoS::AtLeastOnce));
        let b = d.start(out(1, QoS::AtLeastOnce));
        assert_ne!(a, b);
        assert_eq!(
            d.puback(b).unwrap().msg.payload[0],
            1,
            "acks may come out of order"
        );
        assert_eq!(d.puback(b).unwrap_err(), AckError::UnknownPacketId);
        assert_eq!(d.pubrec(a, true).unwrap_err(), AckError::WrongState);
        assert!(d.puback(a).is_ok());
        assert!(d.is_idle());
    }

    #[test]
    fn qos2_flow_drops_the_message_at_pubrec() {
        let mut d = Delivery::default();
        let pid = d.start(out(0, QoS::ExactlyOnce));
        assert_eq!(d.puback(pid).unwrap_err(), AckError::WrongState);
        assert_eq!(d.pubcomp(pid), Err(AckError::WrongState));
        assert!(
            d.pubrec(pid, true).unwrap().is_some(),
            "the receiver takes the message"
        );
        assert!(d.inflight[0].out.is_none());
        assert!(
            d.pubrec(pid, true).unwrap().is_none(),
            "a duplicate PUBREC is answered again"
        );
        d.pubcomp(pid).unwrap();
        assert!(d.is_idle());
    }

    #[test]
    fn failed_pubrec_ends_the_flow() {
        let mut d = Delivery::default();
        let pid = d.start(out(0, QoS::ExactlyOnce));
        assert!(d.pubrec(pid, false).unwrap().is_some());
        assert!(d.inflight.is_empty());
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut d = Delivery::default();
        let first = d.start(out(0, QoS::AtLeastOnce));
        assert_eq!(first.get(), 1);
        for _ in 0..(u16::MAX - 1) {
            let pid = d.start(out(1, QoS::AtLeastOnce));
            d.puback(pid).unwrap();
        }
        // The counter wrapped: id 1 is still in flight, so the next id is 2.
        assert_eq!(d.start(out(2, QoS::AtLeastOnce)).get(), 2);
    }

    #[test]
    fn take_shared_keeps_other_messages_in_order() {
        let mut d = Delivery::default();
        let shared = |n| Outgoing {
            share: Some(7),
            ..out(n, QoS::AtLeastOnce)
        };
        d.start(shared(0));
        let done = d.start(Outgoing {
            share: Some(7),
            ..out(1, QoS::ExactlyOnce)
        });
        d.pubrec(done, true).unwrap();
        d.start(Outgoing {
            share: Some(7),
            ..out(5, QoS::ExactlyOnce)
        });
        d.queue.push_back(out(2, QoS::AtLeastOnce));
        d.queue.push_back(shared(3));
        d.queue.push_back(out(4, QoS::AtLeastOnce));
        let taken: Vec<u8> = d
            .take_shared(7, true)
            .iter()
            .map(|o| o.msg.payload[0])
            .collect();
        assert_eq!(taken, [0, 3], "QoS 2 in flight stays with its receiver");
        assert_eq!(payloads(&d), [2, 4]);
        assert_eq!(d.inflight.len(), 2);
    }

    /// Proves a member that unsubscribes while connected keeps what it was sent (it will
    /// acknowledge it); only its queued messages of the share are taken.
    #[test]
    fn take_shared_without_inflight_takes_the_queue_only() {
        let mut d = Delivery::default();
        let shared = |n| Outgoing {
            share: Some(7),
            ..out(n, QoS::AtLeastOnce)
        };
        d.start(shared(0));
        d.queue.push_back(shared(1));
        let taken: Vec<u8> = d
            .take_shared(7, false)
            .iter()
            .map(|o| o.msg.payload[0])
            .collect();
        assert_eq!(taken, [1]);
        assert_eq!(d.inflight.len(), 1);
    }

    #[test]
    fn sub_ids_collect_without_duplicates() {
        let id = |n| NonZeroU32::new(n).unwrap();
        let mut ids = SubIds::None;
        ids.push(id(3));
        ids.push(id(3));
        assert_eq!(ids, SubIds::One(id(3)));
        ids.push(id(5));
        ids.push(id(3));
        assert_eq!(ids.as_slice(), [id(3), id(5)]);
    }
}
