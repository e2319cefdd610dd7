//! Per-session delivery state: the bounded queue of messages waiting to be sent, the in-flight
//! window of QoS 1/2 messages sent and not yet acknowledged, and the inbound QoS 2 packet ids
//! waiting for PUBREL. Everything here is plain data: the shard decides when to send.
//!
//! Invariants (the ones on the acknowledgement paths are asserted there, in release builds too):
//! - an enqueue never takes `queue.len() + inflight.len()` above the session's `MaxMessages`
//!   (a message sent at once is bounded by the in-flight window instead);
//! - packet ids in flight are unique and non-zero, and slot `i` of the window holds the id `i`
//!   after the oldest ([`Window`]); the oldest slot always holds a message;
//! - an entry awaiting PUBACK holds its QoS 1 message, one awaiting PUBREC its QoS 2 message,
//!   and one awaiting PUBCOMP no message (the receiver owns it after PUBREC);
//! - an inbound QoS 2 id waits for PUBREL at most once.

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

/// How many packet ids there are: 1 to 65,535.
const PACKET_IDS: u32 = u16::MAX as u32;

/// How far `pid` comes after `from` in the order ids are handed out (1, 2, ... 65,535, 1, ...).
fn ids_between(from: PacketId, pid: PacketId) -> usize {
    let (from, pid) = (usize::from(from.get()), usize::from(pid.get()));
    if pid >= from {
        pid - from
    } else {
        pid + PACKET_IDS as usize - from
    }
}

/// The in-flight window: QoS 1/2 messages sent and not yet acknowledged, indexed by packet id.
///
/// Ids are handed out in sequence, so the messages in flight hold consecutive ids from the
/// oldest one still unacknowledged: slot `i` holds id `oldest + i`, and an acknowledgement finds
/// its message by a subtraction, never by a search. An id acknowledged out of order leaves its
/// slot empty until every older one is acknowledged too.
///
/// The window's *span*, from the oldest id in flight to the newest, is what the shard keeps
/// within the client's Receive Maximum: a client that leaves one message unacknowledged while it
/// acknowledges later ones gets fewer messages (sending fewer is always allowed), never more
/// slots. So ids in flight are unique by construction (a span is at most 65,535 ids), and the
/// slots never outnumber `MaxInflightMessages`. They grow with use rather than being allocated
/// at that limit: a fan-out that puts one message in flight in each of a million sessions would
/// otherwise hold 128 slots of 56 bytes in each (7 GB at the default limit, rather than the
/// 224 MB of four slots each).
///
/// Why indexed: handing out an id used to scan the window for ids still in use, and an
/// acknowledgement searched for its id, so a QoS 1 send and its PUBACK with the window full took
/// about 1,000 instructions at 128 in flight (the default `MaxInflightMessages`) and 390,000 at
/// 65,000 (its maximum); by index they take about 350 whatever the window.
#[derive(Debug, Default)]
pub struct Window {
    slots: VecDeque<Option<Inflight>>,
    /// Slots that hold a message.
    len: usize,
    /// The id the next message gets (0 before the first: it gets 1).
    next_pid: u16,
}

impl Window {
    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids from the oldest in flight to the newest handed out: what Receive Maximum bounds.
    pub fn span(&self) -> usize {
        self.slots.len()
    }

    /// The messages in flight, oldest first (the order a resumed session gets them again).
    pub fn iter(&self) -> impl Iterator<Item = &Inflight> {
        self.slots.iter().flatten()
    }

    fn next_pid(&self) -> PacketId {
        PacketId::new(self.next_pid).unwrap_or(PacketId::MIN)
    }

    /// The id of the oldest slot (when there is one).
    fn oldest_pid(&self) -> PacketId {
        let next = usize::from(self.next_pid().get());
        let span = self.span();
        let oldest = if next > span {
            next - span
        } else {
            next + PACKET_IDS as usize - span
        };
        PacketId::new(oldest as u16).expect("a span is at most 65,535 ids")
    }

    /// Enters a message under the next id and returns it.
    fn push(&mut self, state: InflightState, out: Outgoing) -> PacketId {
        assert!(
            self.span() < PACKET_IDS as usize,
            "the shard keeps the span within Receive Maximum, so ids never run out"
        );
        let pid = self.next_pid();
        self.slots.push_back(Some(Inflight {
            pid,
            state,
            out: Some(out),
        }));
        self.len += 1;
        self.next_pid = pid.get() % u16::MAX + 1;
        pid
    }

    /// Puts back an entry a restart recovered, under its own packet id. Entries come in the
    /// order they were sent, so each id comes after the newest one handed out (ids that were
    /// acknowledged since leave empty slots between). One that does not is given back: the
    /// journal lost its order, and the caller sends the message again under a new id.
    fn restore(
        &mut self,
        pid: PacketId,
        state: InflightState,
        out: Option<Outgoing>,
    ) -> Result<(), Option<Outgoing>> {
        if !self.slots.is_empty() {
            let gap = ids_between(self.next_pid(), pid);
            if self.span() + gap >= PACKET_IDS as usize - 1 {
                return Err(out);
            }
            self.slots.extend(std::iter::repeat_with(|| None).take(gap));
        }
        self.slots.push_back(Some(Inflight { pid, state, out }));
        self.len += 1;
        self.next_pid = pid.get() % u16::MAX + 1;
        Ok(())
    }

    /// The slot holding `pid`, if it is in flight.
    fn slot(&self, pid: PacketId) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let at = ids_between(self.oldest_pid(), pid);
        let entry = self.slots.get(at)?.as_ref()?;
        assert_eq!(entry.pid, pid, "slot i holds the id i after the oldest");
        Some(at)
    }

    fn get(&self, at: usize) -> &Inflight {
        self.slots[at].as_ref().expect("slot() returns full slots")
    }

    fn get_mut(&mut self, at: usize) -> &mut Inflight {
        self.slots[at].as_mut().expect("slot() returns full slots")
    }

    /// Empties slot `at`; the ids before the oldest still in flight are free again.
    fn take(&mut self, at: usize) -> Inflight {
        let entry = self.slots[at].take().expect("slot() returns full slots");
        self.len -= 1;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
        }
        assert!(
            self.len <= self.span(),
            "every message in flight has a slot"
        );
        assert_eq!(
            self.len == 0,
            self.slots.is_empty(),
            "the oldest slot always holds a message"
        );
        entry
    }
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
    pub inflight: Window,
    /// Inbound QoS 2 packet ids that were PUBREC'd and wait for PUBREL (exactly-once receipt).
    pub inbound_qos2: Vec<PacketId>,
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

    /// Records the message as sent under the next packet id, which it returns.
    pub fn start(&mut self, out: Outgoing) -> PacketId {
        let state = match out.qos {
            QoS::AtMostOnce => panic!("QoS 0 messages are never in flight"),
            QoS::AtLeastOnce => InflightState::AwaitingPubAck,
            QoS::ExactlyOnce => InflightState::AwaitingPubRec,
        };
        self.inflight.push(state, out)
    }

    /// Puts back a message in flight when the broker stopped, under its packet id (see
    /// [`Window::restore`]); one whose id is out of order is queued to go again.
    pub fn restore_inflight(&mut self, pid: PacketId, out: Outgoing) {
        let state = match out.qos {
            QoS::AtMostOnce => panic!("QoS 0 messages are never in flight"),
            QoS::AtLeastOnce => InflightState::AwaitingPubAck,
            QoS::ExactlyOnce => InflightState::AwaitingPubRec,
        };
        if let Err(Some(out)) = self.inflight.restore(pid, state, Some(out)) {
            self.queue.push_back(out);
        }
    }

    /// Puts back a QoS 2 packet id that waited for PUBCOMP when the broker stopped.
    pub fn restore_awaiting_pubcomp(&mut self, pid: PacketId) {
        // Out of order, the id is dropped: the client completes its side when it sees PUBREL
        // for an id it does not hold, answering PUBCOMP "packet identifier not found".
        let _ = self
            .inflight
            .restore(pid, InflightState::AwaitingPubComp, None);
    }

    /// PUBACK: the QoS 1 message is delivered.
    pub fn puback(&mut self, pid: PacketId) -> Result<Outgoing, AckError> {
        let at = self.inflight.slot(pid).ok_or(AckError::UnknownPacketId)?;
        if self.inflight.get(at).state != InflightState::AwaitingPubAck {
            return Err(AckError::WrongState);
        }
        let entry = self.inflight.take(at);
        assert!(self.inflight.slot(pid).is_none(), "an id is in flight once");
        let Some(out) = entry.out else {
            panic!("a QoS 1 message is held until its PUBACK");
        };
        assert_eq!(out.qos, QoS::AtLeastOnce, "only QoS 1 waits for PUBACK");
        Ok(out)
    }

    /// PUBREC: the receiver owns the message, which is returned; the id stays in flight until
    /// PUBCOMP. A PUBREC with an error reason ends the flow (the sender treats it as delivered).
    /// A duplicate PUBREC returns `None` (it is answered with PUBREL again).
    pub fn pubrec(&mut self, pid: PacketId, accepted: bool) -> Result<Option<Outgoing>, AckError> {
        let at = self.inflight.slot(pid).ok_or(AckError::UnknownPacketId)?;
        let entry = self.inflight.get_mut(at);
        let out = match entry.state {
            InflightState::AwaitingPubAck => return Err(AckError::WrongState),
            InflightState::AwaitingPubComp => {
                assert!(entry.out.is_none(), "after PUBREC the receiver owns it");
                return Ok(None);
            }
            InflightState::AwaitingPubRec if accepted => {
                entry.state = InflightState::AwaitingPubComp;
                entry.out.take()
            }
            InflightState::AwaitingPubRec => {
                let out = self.inflight.take(at).out;
                assert!(self.inflight.slot(pid).is_none(), "an id is in flight once");
                out
            }
        };
        let Some(out) = out else {
            panic!("a QoS 2 message is held until its PUBREC");
        };
        assert_eq!(out.qos, QoS::ExactlyOnce, "only QoS 2 waits for PUBREC");
        Ok(Some(out))
    }

    /// Gives up a message in flight that will not be sent again; its id is free.
    pub fn drop_inflight(&mut self, pid: PacketId) -> Option<Outgoing> {
        let at = self.inflight.slot(pid)?;
        self.inflight.take(at).out
    }

    /// PUBCOMP: the QoS 2 flow is complete.
    pub fn pubcomp(&mut self, pid: PacketId) -> Result<(), AckError> {
        let at = self.inflight.slot(pid).ok_or(AckError::UnknownPacketId)?;
        if self.inflight.get(at).state != InflightState::AwaitingPubComp {
            return Err(AckError::WrongState);
        }
        let entry = self.inflight.take(at);
        assert!(self.inflight.slot(pid).is_none(), "an id is in flight once");
        assert!(entry.out.is_none(), "after PUBREC the receiver owns it");
        Ok(())
    }

    /// PUBREL for an inbound QoS 2 message: its id is released, and a PUBLISH with it is a new
    /// message again.
    pub fn pubrel(&mut self, pid: PacketId) -> Result<(), AckError> {
        let pending = &mut self.inbound_qos2;
        let at = pending
            .iter()
            .position(|&p| p == pid)
            .ok_or(AckError::UnknownPacketId)?;
        pending.swap_remove(at);
        // A second copy would make the client's next message under this id a duplicate, and
        // drop it.
        assert!(
            !pending.contains(&pid),
            "an inbound id waits for PUBREL once"
        );
        Ok(())
    }

    /// Removes the messages that came through `share` for re-dispatch to the other members of
    /// the group: the queued ones, and with `with_inflight` (the session is ending) the QoS 1
    /// ones in flight. QoS 2 messages in flight stay: a QoS 2 message goes to no other member
    /// once sent to one ([MQTT-4.8.2-4], [MQTT-4.8.2-5]).
    pub fn take_shared(&mut self, share: ShareId, with_inflight: bool) -> Vec<Outgoing> {
        let mut taken = Vec::new();
        if with_inflight {
            let shared = |f: &Inflight| {
                f.out
                    .as_ref()
                    .is_some_and(|out| out.share == Some(share) && out.qos == QoS::AtLeastOnce)
            };
            let ids: Vec<PacketId> = self
                .inflight
                .iter()
                .filter(|f| shared(f))
                .map(|f| f.pid)
                .collect();
            taken.extend(ids.into_iter().filter_map(|pid| self.drop_inflight(pid)));
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
        assert!(d.inflight.iter().all(|f| f.out.is_none()));
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

    /// Proves packet ids are handed out in sequence and wrap from 65,535 to 1, never 0.
    #[test]
    fn packet_ids_wrap_past_zero() {
        let mut d = Delivery::default();
        for n in 1..=u16::MAX {
            let pid = d.start(out(0, QoS::AtLeastOnce));
            assert_eq!(pid.get(), n);
            d.puback(pid).unwrap();
        }
        assert_eq!(d.start(out(1, QoS::AtLeastOnce)).get(), 1);
    }

    /// Proves an id acknowledged out of order is found by index and leaves the window's span
    /// only once every older id is acknowledged; until then the span, which the shard holds
    /// within Receive Maximum, counts it.
    #[test]
    fn acks_out_of_order_keep_the_span_until_the_oldest_is_acked() {
        let mut d = Delivery::default();
        let pids: Vec<PacketId> = (0..4).map(|n| d.start(out(n, QoS::AtLeastOnce))).collect();
        assert_eq!(d.puback(pids[2]).unwrap().msg.payload[0], 2);
        assert_eq!(d.puback(pids[2]).unwrap_err(), AckError::UnknownPacketId);
        assert_eq!((d.inflight.len(), d.inflight.span()), (3, 4));
        d.puback(pids[0]).unwrap();
        assert_eq!((d.inflight.len(), d.inflight.span()), (2, 3));
        d.puback(pids[1]).unwrap();
        assert_eq!(
            (d.inflight.len(), d.inflight.span()),
            (1, 1),
            "acking 1 frees 2 as well"
        );
        let order: Vec<u16> = d.inflight.iter().map(|f| f.pid.get()).collect();
        assert_eq!(order, [4]);
        assert_eq!(d.start(out(4, QoS::AtLeastOnce)).get(), 5);
    }

    /// Proves the window finds ids across the wrap from 65,535 to 1 (the oldest id in flight
    /// numerically above the newest) and keeps them in the order they were sent.
    #[test]
    fn the_window_spans_the_wrap() {
        let mut d = Delivery::default();
        for _ in 0..(u16::MAX - 1) {
            let pid = d.start(out(0, QoS::AtLeastOnce));
            d.puback(pid).unwrap();
        }
        let pids: Vec<u16> = (0..3)
            .map(|n| d.start(out(n, QoS::ExactlyOnce)).get())
            .collect();
        assert_eq!(pids, [65535, 1, 2]);
        let order: Vec<u16> = d.inflight.iter().map(|f| f.pid.get()).collect();
        assert_eq!(order, pids);
        let pid = |n| PacketId::new(n).unwrap();
        assert!(d.pubrec(pid(1), true).unwrap().is_some());
        assert_eq!(d.pubcomp(pid(3)), Err(AckError::UnknownPacketId));
        d.pubrec(pid(65535), false).unwrap();
        assert_eq!(d.inflight.span(), 2, "the oldest is now 1");
        d.pubcomp(pid(1)).unwrap();
        assert_eq!(d.drop_inflight(pid(2)).unwrap().msg.payload[0], 2);
        assert!(d.is_idle());
    }

    /// Proves a window of 65,535 ids, every id in flight, cannot take one more: the next id
    /// would be the oldest's. The shard never asks (the span stays within Receive Maximum).
    #[test]
    #[should_panic(expected = "ids never run out")]
    fn a_full_window_of_ids_is_a_bug() {
        let mut d = Delivery::default();
        for _ in 0..=u16::MAX {
            d.start(out(0, QoS::AtLeastOnce));
        }
    }

    /// Proves PUBREL releases an inbound QoS 2 id once, and an id not waiting is unknown.
    /// Proves recovered entries keep their packet ids, with empty slots for ids acknowledged
    /// before the restart, acknowledge by those ids, and that new messages continue after the
    /// newest; an id out of order sends its message again.
    #[test]
    fn restored_entries_keep_their_packet_ids() {
        let mut d = Delivery::default();
        let p = |n| PacketId::new(n).unwrap();
        d.restore_awaiting_pubcomp(p(65_534));
        d.restore_inflight(p(2), out(1, QoS::AtLeastOnce));
        d.restore_inflight(p(5), out(2, QoS::ExactlyOnce));
        d.restore_inflight(p(3), out(3, QoS::AtLeastOnce));
        assert_eq!(d.inflight.len(), 3);
        assert_eq!(d.queue.len(), 1, "id 3 came after 5: sent again");
        assert_eq!(d.start(out(4, QoS::AtLeastOnce)), p(6));
        assert_eq!(d.puback(p(2)).map(|o| o.msg.payload[0]), Ok(1));
        assert!(d.pubrec(p(5), true).is_ok());
        assert_eq!(d.pubcomp(p(65_534)), Ok(()));
        assert_eq!(d.pubcomp(p(5)), Ok(()));
        assert_eq!(d.inflight.iter().map(|e| e.pid).collect::<Vec<_>>(), [p(6)]);
    }

    #[test]
    fn pubrel_releases_an_inbound_id() {
        let mut d = Delivery::default();
        let pid = PacketId::new(9).unwrap();
        d.inbound_qos2.push(pid);
        assert_eq!(d.pubrel(pid), Ok(()));
        assert_eq!(d.pubrel(pid), Err(AckError::UnknownPacketId));
        assert!(d.is_idle());
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
