//! Bytes in: framing, decoding, and dispatch to the packet handlers.
//!
//! The server reads into one buffer per shard and hands the bytes here; whole packets are
//! decoded straight from it (each packet is copied once, into its own exact-size `Bytes`, which
//! then backs every field). Only a packet split across reads is kept in the connection's
//! `inbuf`, which is empty, and unallocated, the rest of the time.
//!
//! Framing is the codec's [`Framer`], measuring frames in place ([`Framer::next_frame_len`]).
//! The core decides only what the bytes alone cannot: whether the connection may go on reading,
//! under which size limit, and that its first packet is a CONNECT.

use std::time::Instant;

use ironsight_codec::{
    packet_type, parse_fixed_header, Bytes, DecodeError, Framer, Packet, ProtocolVersion,
    SubscribeFrame,
};

use super::Shard;
use crate::conn::{ConnId, ConnState};
use crate::violation::Violation;

impl Shard {
    /// Bytes read from `conn`'s socket.
    pub fn input(&mut self, conn: ConnId, now: Instant, data: &[u8]) {
        let Some(c) = self.conns.get_mut(conn as usize) else {
            return;
        };
        if !c.is_open() {
            return;
        }
        if !c.inbuf.is_empty() || c.paused {
            c.inbuf.extend(data, 0, now);
            self.drain_inbuf(conn, now);
            return;
        }
        let (used, frame_len) = self.process_frames(conn, now, data);
        if self.pending_handoff.is_some() {
            return self.finish_handoff(&data[used..]);
        }
        if let Some(c) = self.conns.get_mut(conn as usize) {
            if c.is_open() && used < data.len() {
                c.inbuf.extend(&data[used..], frame_len.unwrap_or(0), now);
            }
        }
    }

    /// Processes what a connection buffered while paused or split across reads.
    pub(super) fn drain_inbuf(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(conn as usize) else {
            return;
        };
        if c.paused || c.inbuf.is_empty() {
            return;
        }
        let mut buf = c.inbuf.take();
        let (used, frame_len) = self.process_frames(conn, now, &buf);
        if self.pending_handoff.is_some() {
            return self.finish_handoff(&buf[used..]);
        }
        let Some(c) = self.conns.get_mut(conn as usize) else {
            return;
        };
        if !c.is_open() {
            return;
        }
        let _ = buf.split_to(used);
        if let Some(len) = frame_len {
            buf.reserve(len.saturating_sub(buf.len()));
        }
        c.inbuf.put_back(buf, used, now);
    }

    /// Handles whole frames at the front of `data`; returns the bytes used and, when a partial
    /// frame's header is known, that frame's length.
    fn process_frames(
        &mut self,
        conn: ConnId,
        now: Instant,
        data: &[u8],
    ) -> (usize, Option<usize>) {
        let mut used = 0;
        while let Some(limit) = self.frame_limit(conn, now, &data[used..]) {
            // A framer a frame, not one kept per connection: every `data` (a read, or what
            // `inbuf` holds) starts at a frame's first byte, so the framer's state never has
            // to outlive this call, and each frame gets the limit of its start (accepting a
            // CONNECT raises it). A `Framer` kept in `Connection` would be paid by every idle
            // connection; reading a partial frame's header again when more bytes come costs at
            // most five bytes.
            let mut framer = Framer::new(limit);
            match framer.next_frame_len(&data[used..]) {
                Ok(Some(len)) => {
                    let frame = Bytes::copy_from_slice(&data[used..used + len]);
                    used += len;
                    self.on_frame(conn, now, frame);
                }
                Ok(None) => return (used, framer.frame_len()),
                Err(error) => {
                    self.framing_failed(conn, now, error, &data[used..]);
                    break;
                }
            }
        }
        (used, None)
    }

    /// The limit to frame `conn`'s next packet with, whose first bytes are `front`; `None`
    /// when the connection failed, was handed off, or must not process more now.
    fn frame_limit(&mut self, conn: ConnId, now: Instant, front: &[u8]) -> Option<u32> {
        let c = self.conns.get(conn as usize)?;
        if !c.is_open() || c.paused {
            return None;
        }
        if c.state == ConnState::AwaitingConnect
            && front
                .first()
                .is_some_and(|&b| b >> 4 != packet_type::CONNECT)
        {
            // [MQTT-3.1.0-1] the first byte already shows this is not a CONNECT: close without
            // waiting for a body (an HTTP probe would otherwise hold the socket). A rule of the
            // connection's state, not of the bytes: the core's, not the framer's.
            self.violated(conn, now, Violation::FirstPacketNotConnect);
            return None;
        }
        Some(self.packet_size_limit(conn))
    }

    /// The stream has no framing left: a header over the limit, or a malformed length.
    fn framing_failed(&mut self, conn: ConnId, now: Instant, error: DecodeError, front: &[u8]) {
        let connecting = self.conns[conn as usize].state == ConnState::AwaitingConnect;
        if connecting && matches!(error, DecodeError::PacketTooLarge { .. }) {
            tracing::debug!(conn, %error, "CONNECT over Endpoint.MaxConnectMessageSize");
            self.stats.connects_too_large += 1;
        }
        self.decode_failed(conn, now, error, front);
    }

    /// One whole packet. What it made the journal record holds the connection's output (its
    /// acknowledgement among it) until the records are durable (`shard/durability.rs`). Not
    /// for the client's own PUBACK and PUBCOMP: they are answered with nothing, and the records
    /// they make (the message released, the next ones sent at QoS 1) promise the client
    /// nothing. Losing them in a crash means a QoS 1 message comes again, which QoS 1 allows;
    /// a QoS 2 message they send holds the output itself (`deliver.rs`).
    fn on_frame(&mut self, conn: ConnId, now: Instant, frame: Bytes) {
        let mark = self.output_mark(conn);
        let promises = !matches!(frame[0] >> 4, packet_type::PUBACK | packet_type::PUBCOMP);
        self.dispatch_frame(conn, now, frame);
        if promises {
            self.hold_output(conn, mark);
        }
    }

    fn dispatch_frame(&mut self, conn: ConnId, now: Instant, frame: Bytes) {
        let c = &mut self.conns[conn as usize];
        c.last_packet_at = now;
        if c.state == ConnState::AwaitingConnect {
            // CONNECT carries its own protocol level; the version passed here is not used.
            match Packet::decode(frame.clone(), ProtocolVersion::V3_1_1) {
                Ok(Packet::Connect(connect)) => self.on_connect(conn, now, *connect, frame),
                // [MQTT-3.1.0-1] the first packet must be CONNECT: close without a word.
                Ok(_) => self.violated(conn, now, Violation::FirstPacketNotConnect),
                Err(error) => self.decode_failed(conn, now, error, &frame),
            }
            return;
        }
        if c.state == ConnState::Authenticating {
            return self.on_auth_step(conn, now, frame);
        }
        if let Some(violation) = Violation::by_packet_type(frame[0], c.is_v5()) {
            return self.violated(conn, now, violation);
        }
        let version = c.protocol;
        let decoded = Packet::split_frame(frame).and_then(|(first_byte, body)| {
            match first_byte >> 4 {
                // Its filters are read one by one as its slices are taken (shard/subscribe.rs).
                packet_type::SUBSCRIBE => SubscribeFrame::decode(first_byte & 0x0F, body, version)
                    .map(|subscribe| self.on_subscribe(conn, now, subscribe)),
                _ => Packet::decode_body(first_byte, body, version)
                    .map(|packet| self.on_packet(conn, now, packet)),
            }
        });
        if let Err(error) = decoded {
            self.decode_failed(conn, now, error, &[]);
        }
    }

    fn on_packet(&mut self, conn: ConnId, now: Instant, packet: Packet) {
        match packet {
            Packet::Publish(publish) => self.on_publish(conn, now, publish),
            Packet::PubAck(ack) => self.on_puback(conn, now, ack),
            Packet::PubRec(ack) => self.on_pubrec(conn, now, ack),
            Packet::PubRel(ack) => self.on_pubrel(conn, ack),
            Packet::PubComp(ack) => self.on_pubcomp(conn, now, ack),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(conn, now, unsubscribe),
            Packet::PingReq => self.send(conn, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.on_disconnect(conn, now, disconnect),
            Packet::Subscribe(_) => unreachable!("SUBSCRIBE is decoded as a SubscribeFrame"),
            Packet::Connect(_)
            | Packet::Auth(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => unreachable!(
                "{} was refused by its type before decoding (Violation::by_packet_type)",
                packet.name()
            ),
        }
    }

    /// A packet that does not decode: the connection ends ([MQTT-4.13.1-1]). Before CONNECT
    /// was accepted, a v5 client is answered with a CONNACK carrying the reason, and a client of
    /// an unknown protocol level with the v3.1.1 CONNACK "unacceptable protocol version".
    pub(super) fn decode_failed(
        &mut self,
        conn: ConnId,
        now: Instant,
        error: DecodeError,
        frame: &[u8],
    ) {
        tracing::debug!(conn, %error, "undecodable packet");
        if self.conns[conn as usize].state == ConnState::AwaitingConnect {
            let reply = match error {
                DecodeError::UnsupportedProtocolVersion { .. } => Some(ProtocolVersion::V3_1_1),
                _ if is_v5_connect(frame) => Some(ProtocolVersion::V5),
                _ => None,
            };
            if let Some(version) = reply {
                self.conns[conn as usize].protocol = version;
                self.send(conn, &super::connect::connack_error(error.reason_code()));
            }
            let why = super::RefusedFor::Protocol(Violation::Decode(error));
            self.refused(conn, None, why);
            self.stats.protocol_errors += 1;
            self.close(conn, now, super::lifecycle::CloseKind::ServerInitiated);
            return;
        }
        self.violated(conn, now, Violation::Decode(error));
    }
}

/// Whether a frame starts like an MQTT 5 CONNECT, so that a refusal can be a v5 CONNACK.
fn is_v5_connect(frame: &[u8]) -> bool {
    let Ok(Some(header)) = parse_fixed_header(frame, u32::MAX) else {
        return false;
    };
    let body = &frame[header.header_len.min(frame.len())..];
    header.packet_type() == packet_type::CONNECT
        && body.len() >= 7
        && body[..6] == *b"\x00\x04MQTT"
        && body[6] == 5
}
