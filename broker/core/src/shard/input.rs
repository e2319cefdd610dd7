//! Bytes in: framing, decoding, and dispatch to the packet handlers.
//!
//! The server reads into one buffer per shard and hands the bytes here; whole packets are
//! decoded straight from it (each packet is copied once, into its own exact-size `Bytes`, which
//! then backs every field). Only a packet split across reads is kept in the connection's
//! `inbuf`, which is empty, and unallocated, the rest of the time.

use std::time::Instant;

use ironsight_codec::{
    packet_type, parse_fixed_header, Bytes, DecodeError, Packet, ProtocolVersion, SubscribeFrame,
};

use super::Shard;
use crate::conn::{ConnId, ConnState};
use crate::violation::Violation;

enum Step {
    /// A whole frame of this many bytes is at the front.
    Frame(usize),
    /// The front is a partial frame; when its header is known, the frame's whole length.
    NeedMore(Option<usize>),
    /// The connection failed, was handed off, or must not process more now.
    Stop,
}

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
        loop {
            match self.next_step(conn, now, &data[used..]) {
                Step::Frame(len) => {
                    let frame = Bytes::copy_from_slice(&data[used..used + len]);
                    used += len;
                    self.on_frame(conn, now, frame);
                }
                Step::NeedMore(frame_len) => return (used, frame_len),
                Step::Stop => return (used, None),
            }
        }
    }

    fn next_step(&mut self, conn: ConnId, now: Instant, data: &[u8]) -> Step {
        let Some(c) = self.conns.get(conn as usize) else {
            return Step::Stop;
        };
        if !c.is_open() || c.paused {
            return Step::Stop;
        }
        if c.state == ConnState::AwaitingConnect && data.first().is_some_and(|&b| b >> 4 != 1) {
            // [MQTT-3.1.0-1] the first byte already shows this is not a CONNECT: close without
            // waiting for a body (an HTTP probe would otherwise hold the socket).
            self.violated(conn, now, Violation::FirstPacketNotConnect);
            return Step::Stop;
        }
        let connecting = c.state == ConnState::AwaitingConnect;
        match parse_fixed_header(data, self.packet_size_limit(conn)) {
            Ok(Some(header)) if header.frame_len() <= data.len() => Step::Frame(header.frame_len()),
            Ok(Some(header)) => Step::NeedMore(Some(header.frame_len())),
            Ok(None) => Step::NeedMore(None),
            Err(error) => {
                if connecting && matches!(error, DecodeError::PacketTooLarge { .. }) {
                    tracing::debug!(conn, %error, "CONNECT over Endpoint.MaxConnectMessageSize");
                    self.stats.connects_too_large += 1;
                }
                self.decode_failed(conn, now, error, data);
                Step::Stop
            }
        }
    }

    fn on_frame(&mut self, conn: ConnId, now: Instant, frame: Bytes) {
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
    fn decode_failed(&mut self, conn: ConnId, now: Instant, error: DecodeError, frame: &[u8]) {
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
    header.first_byte >> 4 == 1 && body.len() >= 7 && body[..6] == *b"\x00\x04MQTT" && body[6] == 5
}
