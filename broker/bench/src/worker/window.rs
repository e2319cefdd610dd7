//! A publisher's QoS 1/2 in-flight window: which packet ids are in use and where each QoS 2
//! exchange stands. Allocated once from the window size (capped by the broker's Receive
//! Maximum), indexed by packet id; acquiring and releasing an id is a push and a pop.
//!
//! An exchange may be timed: the window keeps when its PUBLISH was sent and hands that back
//! when the exchange ends (PUBACK, or PUBCOMP), so the worker can measure how long the broker
//! took to acknowledge (with a durable store: until the message was on disk).

use ironsight_codec::{PacketId, QoS};

/// Where one packet id stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitComp,
}

/// A response that does not fit the exchange: a broker bug or a confused session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{packet} for packet id {id}, which is not awaiting it")]
    Unexpected { packet: &'static str, id: u16 },
}

#[derive(Debug)]
pub struct InflightWindow {
    /// Index `id - 1`.
    slots: Vec<Slot>,
    /// Index `id - 1`: when a timed exchange's PUBLISH was sent (CLOCK_MONOTONIC ns).
    sent_ns: Vec<Option<u64>>,
    /// Free ids; popped from the end.
    free: Vec<u16>,
}

impl InflightWindow {
    /// A window of ids `1..=capacity`.
    pub fn new(capacity: u16) -> Self {
        assert!(capacity > 0);
        InflightWindow {
            slots: vec![Slot::Free; capacity as usize],
            sent_ns: vec![None; capacity as usize],
            // Reversed so that ids are handed out from 1 upwards.
            free: (1..=capacity).rev().collect(),
        }
    }

    pub fn used(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn room(&self) -> usize {
        self.free.len()
    }

    /// Takes a free id for a PUBLISH at `qos` (1 or 2); `timed`: the PUBLISH's send time, for
    /// an exchange whose acknowledgement is to be measured.
    pub fn acquire(&mut self, qos: QoS, timed: Option<u64>) -> Option<PacketId> {
        assert!(qos != QoS::AtMostOnce, "QoS 0 needs no packet id");
        let id = self.free.pop()?;
        let slot = &mut self.slots[id as usize - 1];
        assert_eq!(*slot, Slot::Free);
        self.sent_ns[id as usize - 1] = timed;
        *slot = if qos == QoS::AtLeastOnce {
            Slot::AwaitAck
        } else {
            Slot::AwaitRec
        };
        PacketId::new(id)
    }

    fn slot(&mut self, id: PacketId) -> Option<&mut Slot> {
        self.slots.get_mut(id.get() as usize - 1)
    }

    fn expect(
        &mut self,
        id: PacketId,
        want: Slot,
        packet: &'static str,
    ) -> Result<(), WindowError> {
        match self.slot(id) {
            Some(slot) if *slot == want => Ok(()),
            _ => Err(WindowError::Unexpected {
                packet,
                id: id.get(),
            }),
        }
    }

    /// Frees `id`; returns the send time of its PUBLISH if the exchange was timed.
    fn release(&mut self, id: PacketId) -> Option<u64> {
        *self.slot(id).expect("checked by expect") = Slot::Free;
        self.free.push(id.get());
        self.sent_ns[id.get() as usize - 1].take()
    }

    /// Ends a QoS 1 exchange; returns its PUBLISH's send time if it was timed.
    pub fn on_puback(&mut self, id: PacketId) -> Result<Option<u64>, WindowError> {
        self.expect(id, Slot::AwaitAck, "PUBACK")?;
        Ok(self.release(id))
    }

    /// `accepted`: the PUBREC's reason code is below 0x80. Returns whether to send PUBREL (a
    /// refused PUBREC ends the exchange and frees the id, untimed: it acknowledged nothing).
    pub fn on_pubrec(&mut self, id: PacketId, accepted: bool) -> Result<bool, WindowError> {
        self.expect(id, Slot::AwaitRec, "PUBREC")?;
        if accepted {
            *self.slot(id).expect("checked by expect") = Slot::AwaitComp;
        } else {
            self.release(id);
        }
        Ok(accepted)
    }

    /// Ends a QoS 2 exchange; returns its PUBLISH's send time if it was timed.
    pub fn on_pubcomp(&mut self, id: PacketId) -> Result<Option<u64>, WindowError> {
        self.expect(id, Slot::AwaitComp, "PUBCOMP")?;
        Ok(self.release(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    /// Proves ids are handed out once each, the window fills, and acks free them.
    #[test]
    fn qos1_fill_and_release() {
        let mut w = InflightWindow::new(2);
        assert_eq!(w.acquire(QoS::AtLeastOnce, None), Some(id(1)));
        assert_eq!(w.acquire(QoS::AtLeastOnce, None), Some(id(2)));
        assert_eq!(w.acquire(QoS::AtLeastOnce, None), None);
        assert_eq!(w.used(), 2);
        w.on_puback(id(2)).unwrap();
        assert_eq!(w.room(), 1);
        assert_eq!(w.acquire(QoS::AtLeastOnce, None), Some(id(2)));
    }

    /// Proves a timed exchange hands its send time back once, when it ends (PUBACK; PUBCOMP,
    /// not PUBREC), and an id reused untimed forgets the time of its previous exchange.
    #[test]
    fn timed_exchanges_return_their_send_time() {
        let mut w = InflightWindow::new(2);
        let a = w.acquire(QoS::AtLeastOnce, Some(1_000)).unwrap();
        let b = w.acquire(QoS::ExactlyOnce, Some(2_000)).unwrap();
        assert_eq!(w.on_puback(a), Ok(Some(1_000)));
        assert_eq!(w.on_pubrec(b, true), Ok(true));
        assert_eq!(w.on_pubcomp(b), Ok(Some(2_000)));
        let c = w.acquire(QoS::AtLeastOnce, Some(3_000)).unwrap();
        let d = w.acquire(QoS::ExactlyOnce, Some(4_000)).unwrap();
        assert_eq!(w.on_puback(c), Ok(Some(3_000)));
        assert_eq!(w.on_pubrec(d, false), Ok(false));
        let e = w.acquire(QoS::AtLeastOnce, None).unwrap();
        assert_eq!(w.on_puback(e), Ok(None));
        let f = w.acquire(QoS::AtLeastOnce, None).unwrap();
        assert_eq!(
            w.on_puback(f),
            Ok(None),
            "the refused exchange's time was dropped"
        );
    }

    /// Proves the QoS 2 exchange in order, and that out-of-place responses are errors.
    #[test]
    fn qos2_exchange() {
        let mut w = InflightWindow::new(4);
        let a = w.acquire(QoS::ExactlyOnce, None).unwrap();
        assert!(w.on_pubcomp(a).is_err());
        assert!(w.on_puback(a).is_err());
        assert_eq!(w.on_pubrec(a, true), Ok(true));
        assert!(w.on_pubrec(a, true).is_err());
        w.on_pubcomp(a).unwrap();
        assert_eq!(w.used(), 0);
        let b = w.acquire(QoS::ExactlyOnce, None).unwrap();
        assert_eq!(w.on_pubrec(b, false), Ok(false));
        assert_eq!(w.used(), 0);
        assert!(w.on_puback(id(4000)).is_err());
    }
}
