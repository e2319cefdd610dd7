//! The publishing side of a client: its pacing schedule, its QoS window, its sequence numbers,
//! the time it spent blocked by flow control, and how it encodes its next messages. No I/O: it
//! fills a connection's write buffer; the engine flushes.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};
use ironsight_codec::{
    ByteString, Bytes, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS,
};

use super::conn::Conn;
use super::template::Template;
use super::window::InflightWindow;
use crate::accounting::Window;
use crate::clock::now_ns;
use crate::header::{Header, WINDOW_SEQ_BASE};
use crate::pacer::Pacer;
use crate::plan;
use crate::protocol::Schedule;

/// Messages encoded per turn of one sender, so one fast publisher cannot starve the others.
pub const BATCH_MAX: u64 = 64;
/// Bytes a sender encodes in one burst before it lets the socket take them. A burst starts
/// only once the connection is flushed (nothing in `wbuf` or in its link), so this bounds what
/// a connection holds unsent, beside what a link holds (see `link::TLS_BUFFERED_MAX`).
pub const WBUF_TARGET: usize = 64 * 1024;
/// Responses a responder may owe before new requests are dropped (and counted).
pub const RESPONSES_PENDING_MAX: usize = 4096;
/// Bytes of request-response Correlation Data: run id and sequence number.
pub const CORRELATION_LEN: usize = 12;

/// A response a responder owes.
#[derive(Debug)]
pub struct Response {
    pub topic: ByteString,
    pub correlation: Bytes,
    pub payload: Bytes,
}

/// What kind of publishing a sender does.
#[derive(Debug)]
pub enum Kind {
    /// fanout, fanin, p2p publishers.
    Plain { template: Template },
    /// request-response requester: QoS 2 requests with a per-request Response Topic.
    Requester {
        topic: ByteString,
        client_id: String,
    },
    /// The retained tree: `next` of `messages` published (or cleared, when `clearing`).
    Retained {
        prefix: String,
        messages: u32,
        next: u32,
        clearing: bool,
        /// The PINGREQ after the last message went out (its PINGRESP means the broker has
        /// read everything before it).
        settle_ping: bool,
    },
    /// request-response responder: QoS 1 responses.
    Responder { pending: VecDeque<Response> },
}

/// What the sender wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// More is due right now.
    Again,
    /// Nothing due until then (pacing).
    At(u64),
    /// More is due but the QoS window is full: an acknowledgement will wake it.
    WaitAck,
    /// Nothing to do.
    Idle,
}

/// What every sender needs from the run.
pub struct Ctx<'a> {
    pub run_id: u32,
    pub version: ProtocolVersion,
    pub payload_len: usize,
    pub schedule: &'a Schedule,
}

#[derive(Debug)]
pub struct Sender {
    pub conn: usize,
    pub publisher_id: u32,
    pub qos: QoS,
    /// Set at CONNACK (QoS > 0): its size depends on the broker's Receive Maximum.
    pub window: Option<InflightWindow>,
    pub pacer: Pacer,
    pub kind: Kind,
    /// In the engine's run queue.
    pub queued: bool,
    warmup_seq: u64,
    /// Messages stamped inside the measured window.
    pub window_count: u64,
    pub sent_total: u64,
    blocked_since: Option<u64>,
    /// Time blocked by flow control inside the measured window.
    pub backpressure_ns: u64,
}

impl Sender {
    pub fn new(conn: usize, publisher_id: u32, qos: QoS, rate_per_s: f64, kind: Kind) -> Self {
        Sender {
            conn,
            publisher_id,
            qos,
            window: None,
            pacer: Pacer::new(rate_per_s, 0),
            kind,
            queued: false,
            warmup_seq: 0,
            window_count: 0,
            sent_total: 0,
            blocked_since: None,
            backpressure_ns: 0,
        }
    }

    /// Free QoS window slots (unbounded at QoS 0).
    pub fn room(&self) -> u64 {
        match (&self.window, self.qos) {
            (_, QoS::AtMostOnce) => u64::MAX,
            (Some(w), _) => w.room() as u64,
            (None, _) => 0,
        }
    }

    pub fn inflight(&self) -> u64 {
        self.window.as_ref().map_or(0, |w| w.used() as u64)
    }

    /// The sender wants to send and cannot.
    pub fn block(&mut self, now_ns: u64) {
        self.blocked_since.get_or_insert(now_ns);
    }

    /// The sender can send again: the blocked time inside `window` counts as backpressure.
    pub fn unblock(&mut self, now_ns: u64, window: Window) {
        if let Some(since) = self.blocked_since.take() {
            let from = since.max(window.start_ns);
            let to = now_ns.min(window.end_ns);
            self.backpressure_ns += to.saturating_sub(from);
        }
    }

    fn next_seq(&mut self, in_window: bool) -> u64 {
        if in_window {
            self.window_count += 1;
            WINDOW_SEQ_BASE + self.window_count - 1
        } else {
            self.warmup_seq += 1;
            self.warmup_seq - 1
        }
    }

    /// A packet id for a PUBLISH at `qos` (none at QoS 0); `timed`: see [`InflightWindow::acquire`].
    fn packet_id(&mut self, qos: QoS, timed: Option<u64>) -> Option<PacketId> {
        if qos == QoS::AtMostOnce {
            return None;
        }
        let id = self.window.as_mut()?.acquire(qos, timed);
        assert!(id.is_some(), "room was checked before encoding");
        id
    }

    /// Publishes what is due between the schedule's start and the end of the window (plain
    /// publishers and requesters).
    pub fn fill_flow(&mut self, conn: &mut Conn, ctx: &Ctx<'_>, now: u64) -> Next {
        let window = ctx.schedule.window;
        if now < ctx.schedule.start_ns {
            return Next::At(ctx.schedule.start_ns);
        }
        if now >= window.end_ns {
            self.unblock(now, window);
            return Next::Idle;
        }
        let allowance = self.pacer.allowance(now);
        if allowance == 0 {
            return Next::At(self.pacer.next_due_ns().unwrap_or(now));
        }
        let room = self.room();
        if room == 0 {
            self.block(now);
            return Next::WaitAck;
        }
        self.unblock(now, window);
        let budget = allowance.min(room).min(BATCH_MAX);
        let mut sent = 0;
        while sent < budget && conn.wbuf.len() < WBUF_TARGET {
            let t = now_ns();
            if t >= window.end_ns {
                break;
            }
            let in_window = t >= window.start_ns;
            let seq = self.next_seq(in_window);
            let header = Header {
                run_id: ctx.run_id,
                publisher: self.publisher_id,
                seq,
                sent_ns: t,
            };
            // Only the window counts: its messages' acknowledgements are timed.
            let id = self.packet_id(self.qos, in_window.then_some(t));
            self.encode_flow(conn, ctx, id, &header);
            sent += 1;
        }
        self.pacer.sent(sent);
        self.sent_total += sent;
        self.after_burst(allowance, room, sent)
    }

    fn encode_flow(&mut self, conn: &mut Conn, ctx: &Ctx<'_>, id: Option<PacketId>, h: &Header) {
        match &self.kind {
            Kind::Plain { template } => template.write(&mut conn.wbuf, id, h),
            Kind::Requester { topic, client_id } => {
                let mut correlation = BytesMut::with_capacity(CORRELATION_LEN);
                correlation.put_u32(h.run_id);
                correlation.put_u64(h.seq);
                let mut properties = PublishProperties::default();
                properties.message.response_topic =
                    Some(ByteString::from(plan::response_topic(client_id, h.seq)));
                properties.message.correlation_data = Some(correlation.freeze());
                let publish = Publish {
                    dup: false,
                    qos: self.qos,
                    retain: false,
                    topic: topic.clone(),
                    packet_id: id,
                    properties,
                    payload: payload(ctx.payload_len, h),
                };
                conn.queue(&Packet::Publish(publish), ctx.version);
            }
            Kind::Retained { .. } | Kind::Responder { .. } => {
                unreachable!("not a flow sender")
            }
        }
    }

    /// Publishes (or clears) the retained tree, paced, then sends the settling PINGREQ.
    pub fn fill_retained(&mut self, conn: &mut Conn, ctx: &Ctx<'_>, now: u64) -> Next {
        let allowance = self.pacer.allowance(now);
        let room = self.room();
        let qos = self.qos;
        let Kind::Retained {
            prefix,
            messages,
            next,
            clearing,
            settle_ping,
        } = &mut self.kind
        else {
            unreachable!("not the retained sender")
        };
        let budget = allowance.min(room).min(BATCH_MAX);
        let mut sent = 0;
        while sent < budget && *next < *messages && conn.wbuf.len() < WBUF_TARGET {
            let topic = ByteString::from(plan::retained_topic(prefix, *next));
            let body = if *clearing {
                // An empty retained message deletes the topic's retained message.
                Bytes::new()
            } else {
                let header = Header {
                    run_id: ctx.run_id,
                    publisher: self.publisher_id,
                    seq: WINDOW_SEQ_BASE + *next as u64,
                    sent_ns: now_ns(),
                };
                payload(ctx.payload_len, &header)
            };
            let packet_id = match qos {
                QoS::AtMostOnce => None,
                _ => self.window.as_mut().and_then(|w| w.acquire(qos, None)),
            };
            let publish = Publish {
                dup: false,
                qos,
                retain: true,
                topic,
                packet_id,
                properties: PublishProperties::default(),
                payload: body,
            };
            conn.queue(&Packet::Publish(publish), ctx.version);
            *next += 1;
            sent += 1;
        }
        self.pacer.sent(sent);
        self.sent_total += sent;
        let (next, messages) = (*next, *messages);
        if next == messages {
            if !*settle_ping {
                *settle_ping = true;
                conn.queue(&Packet::PingReq, ctx.version);
                conn.pings_out += 1;
            }
            return Next::Idle;
        }
        self.after_burst(allowance, room, sent)
    }

    /// What follows a burst of `sent` messages that pacing allowed `allowance` of and the QoS
    /// window had `room` for.
    fn after_burst(&self, allowance: u64, room: u64, sent: u64) -> Next {
        if allowance > sent && room > sent {
            Next::Again
        } else if allowance > sent {
            Next::WaitAck
        } else {
            self.pacer.next_due_ns().map_or(Next::Again, Next::At)
        }
    }

    /// Whether the retained tree is published (or cleared) and the broker has it all.
    pub fn retained_settled(&self, conn: &Conn) -> bool {
        match &self.kind {
            Kind::Retained {
                messages,
                next,
                settle_ping,
                ..
            } => next == messages && *settle_ping && self.inflight() == 0 && conn.pings_out == 0,
            _ => false,
        }
    }

    /// Starts clearing the retained tree (publishing empty retained messages).
    pub fn start_clearing(&mut self, now: u64) {
        if let Kind::Retained {
            next,
            clearing,
            settle_ping,
            ..
        } = &mut self.kind
        {
            *next = 0;
            *clearing = true;
            *settle_ping = false;
            self.pacer = Pacer::new(0.0, now);
        }
    }

    /// Queues a response; false if the backlog is full.
    pub fn push_response(&mut self, response: Response) -> bool {
        let Kind::Responder { pending } = &mut self.kind else {
            unreachable!("not a responder")
        };
        if pending.len() >= RESPONSES_PENDING_MAX {
            return false;
        }
        pending.push_back(response);
        true
    }

    /// Sends owed responses while the QoS 1 window has room.
    pub fn fill_responses(&mut self, conn: &mut Conn, ctx: &Ctx<'_>) -> Next {
        let mut sent = 0;
        loop {
            let Kind::Responder { pending } = &mut self.kind else {
                unreachable!("not a responder")
            };
            if pending.is_empty() {
                break;
            }
            if conn.wbuf.len() >= WBUF_TARGET || sent >= BATCH_MAX {
                return Next::Again;
            }
            let Some(window) = self.window.as_mut() else {
                return Next::WaitAck;
            };
            let Some(id) = window.acquire(QoS::AtLeastOnce, None) else {
                return Next::WaitAck;
            };
            let Some(r) = pending.pop_front() else {
                unreachable!("checked non-empty")
            };
            let mut properties = PublishProperties::default();
            properties.message.correlation_data = Some(r.correlation);
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: r.topic,
                packet_id: Some(id),
                properties,
                payload: r.payload,
            };
            conn.queue(&Packet::Publish(publish), ctx.version);
            sent += 1;
            self.sent_total += 1;
        }
        Next::Idle
    }
}

/// A payload of `len` bytes starting with `header`, zero padded.
pub fn payload(len: usize, header: &Header) -> Bytes {
    let mut p = vec![0u8; len];
    header.write(&mut p);
    Bytes::from(p)
}

/// The Correlation Data a request with this header carries.
pub fn correlation_of(header: &Header) -> [u8; CORRELATION_LEN] {
    let mut c = [0u8; CORRELATION_LEN];
    c[..4].copy_from_slice(&header.run_id.to_be_bytes());
    c[4..].copy_from_slice(&header.seq.to_be_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;

    const MS: u64 = 1_000_000;

    fn window() -> Window {
        Window {
            start_ns: 100 * MS,
            end_ns: 200 * MS,
        }
    }

    /// Proves only blocked time inside the window counts as backpressure.
    #[test]
    fn backpressure_is_clipped_to_the_window() {
        let mut s = Sender::new(
            0,
            0,
            QoS::AtMostOnce,
            0.0,
            Kind::Responder {
                pending: VecDeque::new(),
            },
        );
        s.block(50 * MS);
        s.block(60 * MS); // already blocked: the first time stands
        s.unblock(120 * MS, window());
        assert_eq!(s.backpressure_ns, 20 * MS);
        s.block(190 * MS);
        s.unblock(300 * MS, window());
        assert_eq!(s.backpressure_ns, 30 * MS);
        s.unblock(400 * MS, window()); // not blocked: nothing added
        assert_eq!(s.backpressure_ns, 30 * MS);
    }

    /// Proves warm-up and window messages get separate sequence numbers, and the window count
    /// is what was stamped inside the window.
    #[test]
    fn sequence_numbers() {
        let template = Template::new("t", QoS::AtMostOnce, false, 64, ProtocolVersion::V5);
        let mut s = Sender::new(0, 3, QoS::AtMostOnce, 0.0, Kind::Plain { template });
        assert_eq!(s.next_seq(false), 0);
        assert_eq!(s.next_seq(false), 1);
        assert_eq!(s.next_seq(true), WINDOW_SEQ_BASE);
        assert_eq!(s.next_seq(true), WINDOW_SEQ_BASE + 1);
        assert_eq!(s.window_count, 2);
    }

    /// Proves a QoS 1 publisher stops at its window and asks to be woken by an ack, and that
    /// an unstarted schedule asks for a timer.
    #[test]
    fn window_limits_a_flow() {
        let template = Template::new("t", QoS::AtLeastOnce, false, 64, ProtocolVersion::V5);
        let mut s = Sender::new(0, 0, QoS::AtLeastOnce, 0.0, Kind::Plain { template });
        s.window = Some(InflightWindow::new(3));
        let schedule = Schedule {
            start_ns: 0,
            window: Window {
                start_ns: 0,
                end_ns: u64::MAX,
            },
            drain_end_ns: u64::MAX,
        };
        let ctx = Ctx {
            run_id: 1,
            version: ProtocolVersion::V5,
            payload_len: 64,
            schedule: &schedule,
        };
        let mut conn = Conn::new(Role::Publisher, 0, None, false);
        assert_eq!(s.fill_flow(&mut conn, &ctx, now_ns()), Next::WaitAck);
        assert_eq!(s.window_count, 3);
        assert_eq!(s.fill_flow(&mut conn, &ctx, now_ns()), Next::WaitAck);
        assert_eq!(s.window_count, 3);
        let late = Schedule {
            start_ns: u64::MAX - 1,
            ..schedule
        };
        let ctx = Ctx {
            schedule: &late,
            ..ctx
        };
        assert_eq!(s.fill_flow(&mut conn, &ctx, 5), Next::At(u64::MAX - 1));
    }

    /// Proves the correlation data layout: run id then sequence number.
    #[test]
    fn correlation_layout() {
        let h = Header {
            run_id: 1,
            publisher: 0,
            seq: 2,
            sent_ns: 0,
        };
        assert_eq!(correlation_of(&h), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
    }
}
