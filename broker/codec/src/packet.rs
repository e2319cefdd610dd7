//! The [`Packet`] enum and the dispatch from a whole frame to the per-packet decoders (and back),
//! with the two packets that have no body of their own (PINGREQ, PINGRESP). The values every
//! packet shares live in `types`, the fixed header in `header`: packet files import those, never
//! this module, which imports them all.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::ack::{PubResponse, PubResponseKind};
use crate::auth::Auth;
use crate::connack::ConnAck;
use crate::connect::Connect;
use crate::disconnect::Disconnect;
use crate::error::DecodeError;
use crate::header::{packet_type, parse_fixed_header};
use crate::publish::Publish;
use crate::suback::SubAck;
use crate::subscribe::Subscribe;
use crate::types::{ProtocolVersion, UserProperties};
use crate::unsuback::UnsubAck;
use crate::unsubscribe::Unsubscribe;

/// Any MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: a CONNECT is large and rare, and would otherwise size every packet.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResponse),
    PubRec(PubResponse),
    PubRel(PubResponse),
    PubComp(PubResponse),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// Decodes exactly one whole packet (fixed header included) from `frame`, zero-copy: strings
    /// and binary fields are slices of `frame`. `version` is the one negotiated by CONNECT;
    /// CONNECT itself ignores it (it carries its own level). Any validation failure is an `Err`,
    /// never a panic.
    pub fn decode(frame: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
        let (first_byte, body) = Packet::split_frame(frame)?;
        Packet::decode_body(first_byte, body, version)
    }

    /// The first byte and the body of one whole frame, for callers that decode some packet
    /// types their own way (a broker's SUBSCRIBE as a [`crate::SubscribeFrame`]).
    pub fn split_frame(mut frame: Bytes) -> Result<(u8, Bytes), DecodeError> {
        let header = parse_fixed_header(&frame, u32::MAX)?.ok_or(DecodeError::UnexpectedEnd)?;
        let frame_len = header.frame_len();
        if frame.len() < frame_len {
            return Err(DecodeError::UnexpectedEnd);
        }
        if frame.len() > frame_len {
            return Err(DecodeError::TrailingBytes);
        }
        // `advance` moves the start of the same `Bytes`: no reference-count traffic.
        frame.advance(header.header_len);
        Ok((header.first_byte, frame))
    }

    /// Decodes a packet from its first byte and its body (everything after the fixed header),
    /// for callers that parsed the fixed header themselves.
    pub fn decode_body(
        first_byte: u8,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Packet, DecodeError> {
        let flags = first_byte & 0x0F;
        Ok(match first_byte >> 4 {
            packet_type::PUBLISH => Packet::Publish(Publish::decode(flags, body, version)?),
            packet_type::PUBACK => Packet::PubAck(PubResponse::decode(
                PubResponseKind::PubAck,
                flags,
                body,
                version,
            )?),
            packet_type::PUBREC => Packet::PubRec(PubResponse::decode(
                PubResponseKind::PubRec,
                flags,
                body,
                version,
            )?),
            packet_type::PUBREL => Packet::PubRel(PubResponse::decode(
                PubResponseKind::PubRel,
                flags,
                body,
                version,
            )?),
            packet_type::PUBCOMP => Packet::PubComp(PubResponse::decode(
                PubResponseKind::PubComp,
                flags,
                body,
                version,
            )?),
            packet_type::CONNECT => {
                Packet::Connect(Box::new(Connect::decode(flags, body, version)?))
            }
            packet_type::CONNACK => Packet::ConnAck(ConnAck::decode(flags, body, version)?),
            packet_type::SUBSCRIBE => Packet::Subscribe(Subscribe::decode(flags, body, version)?),
            packet_type::SUBACK => Packet::SubAck(SubAck::decode(flags, body, version)?),
            packet_type::UNSUBSCRIBE => {
                Packet::Unsubscribe(Unsubscribe::decode(flags, body, version)?)
            }
            packet_type::UNSUBACK => Packet::UnsubAck(UnsubAck::decode(flags, body, version)?),
            packet_type::PINGREQ => {
                decode_empty(flags, &body)?;
                Packet::PingReq
            }
            packet_type::PINGRESP => {
                decode_empty(flags, &body)?;
                Packet::PingResp
            }
            packet_type::DISCONNECT => {
                Packet::Disconnect(Disconnect::decode(flags, body, version)?)
            }
            packet_type::AUTH => Packet::Auth(Auth::decode(flags, body, version)?),
            _ => return Err(DecodeError::InvalidPacketType),
        })
    }

    /// Writes the whole packet, fixed header included, after reserving [`Packet::encoded_len`]
    /// bytes in `out`. Data MQTT 3.x cannot carry (properties, most reason codes) is dropped
    /// when `version` is not v5. A CONNECT is written in its own `protocol`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        match self {
            Packet::Connect(p) => p.encode(version, out),
            Packet::ConnAck(p) => p.encode(version, out),
            Packet::Publish(p) => p.encode(version, out),
            Packet::PubAck(p) => p.encode(PubResponseKind::PubAck, version, out),
            Packet::PubRec(p) => p.encode(PubResponseKind::PubRec, version, out),
            Packet::PubRel(p) => p.encode(PubResponseKind::PubRel, version, out),
            Packet::PubComp(p) => p.encode(PubResponseKind::PubComp, version, out),
            Packet::Subscribe(p) => p.encode(version, out),
            Packet::SubAck(p) => p.encode(version, out),
            Packet::Unsubscribe(p) => p.encode(version, out),
            Packet::UnsubAck(p) => p.encode(version, out),
            Packet::PingReq => put_empty(out, packet_type::PINGREQ),
            Packet::PingResp => put_empty(out, packet_type::PINGRESP),
            Packet::Disconnect(p) => p.encode(version, out),
            Packet::Auth(p) => p.encode(version, out),
        }
    }

    /// Length of the whole encoded packet, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Packet::Connect(p) => p.encoded_len(version),
            Packet::ConnAck(p) => p.encoded_len(version),
            Packet::Publish(p) => p.encoded_len(version),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.encoded_len(version)
            }
            Packet::Subscribe(p) => p.encoded_len(version),
            Packet::SubAck(p) => p.encoded_len(version),
            Packet::Unsubscribe(p) => p.encoded_len(version),
            Packet::UnsubAck(p) => p.encoded_len(version),
            Packet::PingReq | Packet::PingResp => 2,
            Packet::Disconnect(p) => p.encoded_len(version),
            Packet::Auth(p) => p.encoded_len(version),
        }
    }

    /// Removes the Reason String and the User Properties of an acknowledgement, CONNACK,
    /// DISCONNECT or AUTH: the two properties a sender leaves out rather than send a packet over
    /// the receiver's Maximum Packet Size ([MQTT-3.2.2-19], [MQTT-3.2.2-20], [MQTT-3.4.2-2],
    /// [MQTT-3.4.2-3] and their twins for PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT
    /// and AUTH). A PUBLISH keeps its User Properties: they belong to the message
    /// ([MQTT-3.3.2-17]). Returns whether anything was removed.
    pub fn strip_reason_properties(&mut self) -> bool {
        fn strip(reason_string: &mut Option<ByteString>, user: &mut UserProperties) -> bool {
            let stripped = reason_string.is_some() || !user.is_empty();
            *reason_string = None;
            user.clear();
            stripped
        }
        match self {
            Packet::ConnAck(p) => strip(
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                strip(
                    &mut p.properties.reason_string,
                    &mut p.properties.user_properties,
                )
            }
            Packet::SubAck(p) => strip(
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::UnsubAck(p) => strip(
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::Disconnect(p) => strip(
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::Auth(p) => strip(
                &mut p.properties.reason_string,
                &mut p.properties.user_properties,
            ),
            Packet::Connect(_)
            | Packet::Publish(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::PingResp => false,
        }
    }

    /// The packet's name as the specification spells it, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// PINGREQ and PINGRESP: no flags, no body.
fn decode_empty(flags: u8, body: &Bytes) -> Result<(), DecodeError> {
    if flags != 0 {
        return Err(DecodeError::ReservedFlags);
    }
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(())
}

fn put_empty(out: &mut BytesMut, kind: u8) {
    out.reserve(2);
    out.put_u8(kind << 4);
    out.put_u8(0);
}

/// Defines the tests' `decode(bytes, version)` for one kind of packet: it decodes a whole packet
/// and panics if another kind came out.
#[cfg(test)]
macro_rules! test_decoder {
    ($variant:ident -> $ty:ty) => {
        fn decode(bytes: &[u8], version: ProtocolVersion) -> Result<$ty, DecodeError> {
            match Packet::decode(Bytes::copy_from_slice(bytes), version)? {
                Packet::$variant(p) => Ok(p),
                other => panic!("decoded {other:?}"),
            }
        }
    };
}
#[cfg(test)]
pub(crate) use test_decoder;

/// Encodes `packet`, checks the length prediction, decodes the bytes again and checks the result
/// is the same packet. Returns the encoding for byte-level assertions.
#[cfg(test)]
pub(crate) fn assert_round_trip(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out);
    assert_eq!(
        out.len(),
        packet.encoded_len(version),
        "encoded_len of {packet:?}"
    );
    let bytes = out.freeze();
    let decoded = Packet::decode(bytes.clone(), version)
        .unwrap_or_else(|e| panic!("re-decoding {packet:?} under {version:?}: {e}"));
    assert_eq!(&decoded, packet, "round trip under {version:?}");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PacketId, QoS};
    use crate::ReasonCode;

    const ALL: [ProtocolVersion; 3] = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];

    /// Proves PINGREQ and PINGRESP are two bytes in every version and decode back.
    #[test]
    fn ping_round_trip() {
        for version in ALL {
            for (packet, bytes) in [
                (Packet::PingReq, [0b1100_0000, 0]), // PINGREQ, remaining length 0
                (Packet::PingResp, [0b1101_0000, 0]), // PINGRESP, remaining length 0
            ] {
                let mut out = BytesMut::new();
                packet.encode(version, &mut out);
                assert_eq!(&out[..], &bytes);
                assert_eq!(packet.encoded_len(version), 2);
                assert_eq!(Packet::decode(out.freeze(), version), Ok(packet));
            }
        }
    }

    /// Proves [MQTT-2.1.3-1] for PINGREQ and that a ping has no body.
    #[test]
    fn ping_flags_and_body() {
        let flags = Bytes::from_static(&[0b1100_0001, 0]); // PINGREQ with flag bit 0 set
        assert_eq!(
            Packet::decode(flags, ProtocolVersion::V5),
            Err(DecodeError::ReservedFlags)
        );
        let body = Bytes::from_static(&[0b1101_0000, 1, 0]); // PINGRESP with a 1-byte body
        assert_eq!(
            Packet::decode(body, ProtocolVersion::V5),
            Err(DecodeError::TrailingBytes)
        );
    }

    /// Proves packet type 0 is refused, and AUTH (15) exists only in MQTT 5.
    #[test]
    fn reserved_packet_types() {
        let zero = Bytes::from_static(&[0b0000_0000, 0]); // type 0: reserved
        assert_eq!(
            Packet::decode(zero, ProtocolVersion::V5),
            Err(DecodeError::InvalidPacketType)
        );
        for version in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1] {
            let auth = Bytes::from_static(&[0b1111_0000, 0]); // AUTH, remaining length 0
            assert_eq!(
                Packet::decode(auth, version),
                Err(DecodeError::InvalidPacketType)
            );
        }
    }

    /// Proves a frame must hold exactly the packet its remaining length declares.
    #[test]
    fn frame_length_must_match() {
        // DISCONNECT declaring 2 bytes, holding 1.
        let short = Bytes::from_static(&[0b1110_0000, 2, 0x00]);
        assert_eq!(
            Packet::decode(short, ProtocolVersion::V5),
            Err(DecodeError::UnexpectedEnd)
        );
        let long = Bytes::from_static(&[0b1110_0000, 0, 0x00]); // DISCONNECT declaring 0, holding 1
        assert_eq!(
            Packet::decode(long, ProtocolVersion::V5),
            Err(DecodeError::TrailingBytes)
        );
        let empty = Bytes::new();
        assert_eq!(
            Packet::decode(empty, ProtocolVersion::V5),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    /// Proves the Reason String and User Properties come off an acknowledgement (and it gets
    /// shorter), while a PUBLISH keeps the User Properties of its message.
    #[test]
    fn reason_properties_are_strippable() {
        let user = vec![("k".into(), "v".into())];
        let mut ack = Packet::SubAck(crate::SubAck {
            packet_id: PacketId::MIN,
            reason_codes: vec![ReasonCode::Success],
            properties: crate::ReasonProperties {
                reason_string: Some("why".into()),
                user_properties: user.clone(),
            },
        });
        let before = ack.encoded_len(ProtocolVersion::V5);
        assert!(ack.strip_reason_properties());
        assert_eq!(ack.encoded_len(ProtocolVersion::V5), before - 6 - 7);
        assert!(!ack.strip_reason_properties(), "nothing left to strip");
        let mut publish = Packet::Publish(crate::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            properties: crate::PublishProperties {
                message: crate::MessageProperties {
                    user_properties: user,
                    ..Default::default()
                },
                ..Default::default()
            },
            payload: Bytes::new(),
        });
        let kept = publish.clone();
        assert!(!publish.strip_reason_properties());
        assert_eq!(publish, kept);
    }

    /// Proves the imports go one way: outside its tests, no packet file (nor the modules they
    /// share) imports this module, which imports them all. The base types they need live in
    /// `types` and `header`.
    #[test]
    fn packet_files_do_not_import_packet() {
        let files = [
            ("ack.rs", include_str!("ack.rs")),
            ("auth.rs", include_str!("auth.rs")),
            ("connack.rs", include_str!("connack.rs")),
            ("connect.rs", include_str!("connect.rs")),
            ("disconnect.rs", include_str!("disconnect.rs")),
            ("publish.rs", include_str!("publish.rs")),
            ("suback.rs", include_str!("suback.rs")),
            ("subscribe.rs", include_str!("subscribe.rs")),
            ("unsuback.rs", include_str!("unsuback.rs")),
            ("unsubscribe.rs", include_str!("unsubscribe.rs")),
            ("properties.rs", include_str!("properties.rs")),
            ("strings.rs", include_str!("strings.rs")),
            ("header.rs", include_str!("header.rs")),
            ("types.rs", include_str!("types.rs")),
            ("framer.rs", include_str!("framer.rs")),
        ];
        for (name, text) in files {
            let library = text.split("#[cfg(test)]").next().unwrap_or(text);
            assert!(
                !library.contains("crate::packet"),
                "{name} imports crate::packet outside its tests"
            );
        }
    }

    /// Proves a packet's name is the specification's spelling.
    #[test]
    fn names() {
        let d = Packet::Disconnect(crate::Disconnect {
            reason_code: ReasonCode::Success,
            properties: Default::default(),
        });
        assert_eq!(d.name(), "DISCONNECT");
        assert_eq!(Packet::PingReq.name(), "PINGREQ");
    }
}
