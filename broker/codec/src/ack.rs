//! PUBACK, PUBREC, PUBREL and PUBCOMP (§3.4 - §3.7): the QoS 1 and QoS 2 handshakes. The four
//! share one layout and one struct, [`PubResponse`]; [`PubResponseKind`] says which of them a
//! value is on the wire, because the kind decides the first byte, the fixed header flags (PUBREL
//! alone has 0b0010) and the reason codes allowed.
//!
//! Layout: packet id, [v5: reason code, [properties]]. In v5 the reason code and property block
//! may be left out: a body of 2 bytes means Success without properties, 3 bytes a reason code
//! without properties ([MQTT-3.4.2-1] and its siblings).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{put_reason_tail, v5_reason_tail_len, ReasonProperties};
use crate::reason::{ReasonCode, ReasonTable};
use crate::strings::Reader;
use crate::types::{PacketId, ProtocolVersion};

/// Which of the four acknowledgement packets a [`PubResponse`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PubResponseKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

impl PubResponseKind {
    /// The MQTT Control Packet type (4..=7).
    pub fn packet_type(self) -> u8 {
        match self {
            PubResponseKind::PubAck => packet_type::PUBACK,
            PubResponseKind::PubRec => packet_type::PUBREC,
            PubResponseKind::PubRel => packet_type::PUBREL,
            PubResponseKind::PubComp => packet_type::PUBCOMP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PubResponseKind::PubAck => "PUBACK",
            PubResponseKind::PubRec => "PUBREC",
            PubResponseKind::PubRel => "PUBREL",
            PubResponseKind::PubComp => "PUBCOMP",
        }
    }

    /// The fixed header flags the kind reserves ([MQTT-3.6.1-1] for PUBREL).
    fn flags(self) -> u8 {
        match self {
            PubResponseKind::PubRel => 0b0010,
            _ => 0,
        }
    }

    fn reason_table(self) -> ReasonTable {
        match self {
            PubResponseKind::PubAck | PubResponseKind::PubRec => ReasonTable::PubAckPubRec,
            PubResponseKind::PubRel | PubResponseKind::PubComp => ReasonTable::PubRelPubComp,
        }
    }
}

/// A PUBACK, PUBREC, PUBREL or PUBCOMP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubResponse {
    pub packet_id: PacketId,
    /// v5 only; 3.x acknowledgements are always Success.
    pub reason_code: ReasonCode,
    /// v5 only.
    pub properties: ReasonProperties,
}

impl PubResponse {
    /// A successful acknowledgement without properties: the common case.
    pub fn success(packet_id: PacketId) -> Self {
        PubResponse {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: ReasonProperties::default(),
        }
    }

    /// Decodes the body of a `kind` packet. Unlike the other packets' `decode`, this one needs
    /// the kind: the four packets share a layout but not their flags or reason codes.
    pub fn decode(
        kind: PubResponseKind,
        flags: u8,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        if flags != kind.flags() {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let packet_id = r.packet_id()?;
        let mut response = PubResponse::success(packet_id);
        if version.is_v5() && !r.is_empty() {
            response.reason_code = kind.reason_table().decode(kind.packet_type(), r.u8()?)?;
            if !r.is_empty() {
                response.properties = ReasonProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(response)
    }

    /// Writes the whole packet as a `kind`. For v5 the shortest form that carries the reason
    /// and properties is used; for 3.x both are dropped.
    pub fn encode(&self, kind: PubResponseKind, version: ProtocolVersion, out: &mut BytesMut) {
        let (properties_len, tail_len) = self.tail_len(version);
        begin_packet(out, (kind.packet_type() << 4) | kind.flags(), 2 + tail_len);
        out.put_u16(self.packet_id.get());
        put_reason_tail(out, tail_len, self.reason_code, properties_len, |out| {
            self.properties.encode(out)
        });
    }

    /// Length of the whole packet; the same for all four kinds.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        packet_len(2 + self.tail_len(version).1)
    }

    /// The property block's and the reason tail's lengths; 3.x has neither.
    fn tail_len(&self, version: ProtocolVersion) -> (usize, usize) {
        v5_reason_tail_len(version, self.reason_code, || self.properties.encoded_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    fn wrap(kind: PubResponseKind, response: PubResponse) -> Packet {
        match kind {
            PubResponseKind::PubAck => Packet::PubAck(response),
            PubResponseKind::PubRec => Packet::PubRec(response),
            PubResponseKind::PubRel => Packet::PubRel(response),
            PubResponseKind::PubComp => Packet::PubComp(response),
        }
    }

    const KINDS: [PubResponseKind; 4] = [
        PubResponseKind::PubAck,
        PubResponseKind::PubRec,
        PubResponseKind::PubRel,
        PubResponseKind::PubComp,
    ];

    /// Proves the 3.x layout of all four packets: first byte, flags, packet id.
    #[test]
    #[rustfmt::skip]
    fn v3_layouts() {
        for (kind, first_byte) in [
            (PubResponseKind::PubAck, 0b0100_0000),  // PUBACK
            (PubResponseKind::PubRec, 0b0101_0000),  // PUBREC
            (PubResponseKind::PubRel, 0b0110_0010),  // PUBREL: flags 0010
            (PubResponseKind::PubComp, 0b0111_0000), // PUBCOMP
        ] {
            let bytes = [
                first_byte, 2, // remaining length 2
                0x12, 0x34,    // packet id 0x1234
            ];
            let packet = wrap(kind, PubResponse::success(id(0x1234)));
            for version in [ProtocolVersion::V3_1, V3, V5] {
                assert_eq!(
                    Packet::decode(Bytes::copy_from_slice(&bytes), version),
                    Ok(packet.clone())
                );
                let out = assert_round_trip(&packet, version);
                assert_eq!(&out[..], &bytes, "{kind:?} {version:?}");
                assert_eq!(packet.name(), kind.name());
            }
        }
    }

    /// Proves the v5 short forms: 2 bytes is Success, 3 bytes a reason without properties, and
    /// the encoder picks the shortest.
    #[test]
    #[rustfmt::skip]
    fn v5_short_forms() {
        let reason_only = [
            0b0100_0000, 3, // PUBACK, remaining length 3
            0x00, 0x01,     // packet id 1
            0x10,           // reason: No matching subscribers
        ];
        let packet = Packet::PubAck(PubResponse {
            reason_code: ReasonCode::NoMatchingSubscribers,
            ..PubResponse::success(id(1))
        });
        assert_eq!(
            Packet::decode(Bytes::copy_from_slice(&reason_only), V5),
            Ok(packet.clone())
        );
        assert_eq!(&assert_round_trip(&packet, V5)[..], &reason_only);

        let long_success = [
            0b0111_0000, 4, // PUBCOMP, remaining length 4
            0x00, 0x01,     // packet id 1
            0x00,           // reason: Success
            0x00,           // property length 0
        ];
        let decoded = Packet::decode(Bytes::copy_from_slice(&long_success), V5).unwrap();
        assert_eq!(decoded, Packet::PubComp(PubResponse::success(id(1))));
        assert_eq!(&assert_round_trip(&decoded, V5)[..], &[0x70, 2, 0x00, 0x01]);
    }

    /// Proves reason string and user properties survive a round trip for every kind, and that
    /// 3.1.1 drops them with the reason code.
    #[test]
    fn round_trip_every_property() {
        for kind in KINDS {
            let reason_code = match kind {
                PubResponseKind::PubAck | PubResponseKind::PubRec => ReasonCode::QuotaExceeded,
                _ => ReasonCode::PacketIdentifierNotFound,
            };
            let response = PubResponse {
                packet_id: id(9),
                reason_code,
                properties: ReasonProperties {
                    reason_string: Some("why".into()),
                    user_properties: vec![("k".into(), "v".into())],
                },
            };
            assert_round_trip(&wrap(kind, response.clone()), V5);
            let mut out = BytesMut::new();
            response.encode(kind, V3, &mut out);
            assert_eq!(&out[1..], &[2, 0x00, 0x09], "{kind:?}");
        }
    }

    /// Proves [MQTT-3.6.1-1] for PUBREL and [MQTT-2.1.3-1] for the others.
    #[test]
    fn reserved_flags() {
        for bytes in [
            [0b0110_0000, 2, 0x00, 0x01], // PUBREL without its 0010 flags
            [0b0100_0010, 2, 0x00, 0x01], // PUBACK with PUBREL's flags
            [0b0111_0001, 2, 0x00, 0x01], // PUBCOMP with flag bit 0
        ] {
            assert_eq!(
                Packet::decode(Bytes::copy_from_slice(&bytes), V5),
                Err(DecodeError::ReservedFlags)
            );
        }
    }

    /// Proves each kind refuses reason codes outside its table.
    #[test]
    fn reason_code_tables() {
        for (first_byte, code) in [
            (0b0100_0000u8, 0x92u8), // PUBACK with Packet identifier not found: PUBREL's code
            (0b0110_0010, 0x10),     // PUBREL with No matching subscribers: PUBACK's code
            (0b0101_0000, 0x03),     // PUBREC with an undefined code
        ] {
            let bytes = [first_byte, 3, 0x00, 0x01, code];
            assert_eq!(
                Packet::decode(Bytes::copy_from_slice(&bytes), V5),
                Err(DecodeError::InvalidReasonCode {
                    packet: first_byte >> 4,
                    code
                })
            );
        }
    }

    /// Proves packet id 0, a 3.x body longer than 2, and a short body are refused.
    #[test]
    fn malformed_bodies() {
        let zero = Bytes::from_static(&[0b0100_0000, 2, 0x00, 0x00]); // PUBACK, packet id 0
        assert_eq!(Packet::decode(zero, V5), Err(DecodeError::PacketIdZero));
        let long = Bytes::from_static(&[0b0100_0000, 3, 0x00, 0x01, 0x00]); // 3.1.1: 3 bytes
        assert_eq!(Packet::decode(long, V3), Err(DecodeError::TrailingBytes));
        let short = Bytes::from_static(&[0b0100_0000, 1, 0x00]); // half a packet id
        assert_eq!(Packet::decode(short, V5), Err(DecodeError::UnexpectedEnd));
        let stray = Bytes::from_static(&[0b0100_0000, 5, 0x00, 0x01, 0x00, 0x00, 0xAA]);
        assert_eq!(Packet::decode(stray, V5), Err(DecodeError::TrailingBytes));
    }
}
