//! UNSUBACK (§3.11).
//!
//! Layout: packet id; in v5 then properties and one reason code per filter of the UNSUBSCRIBE.
//! A 3.x UNSUBACK is the packet id alone.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{block_len, put_block_len, ReasonProperties};
use crate::reason::{ReasonCode, ReasonTable};
use crate::strings::Reader;
use crate::types::{PacketId, ProtocolVersion};

/// An UNSUBACK packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    /// v5 only: one per topic filter, in order.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 only.
    pub properties: ReasonProperties,
}

impl UnsubAck {
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != 0 {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let packet_id = r.packet_id()?;
        let mut unsuback = UnsubAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: ReasonProperties::default(),
        };
        if version.is_v5() {
            unsuback.properties = ReasonProperties::decode(&mut r)?;
            unsuback.reason_codes.reserve_exact(r.remaining());
            while !r.is_empty() {
                let code = ReasonTable::UnsubAck.decode(packet_type::UNSUBACK, r.u8()?)?;
                unsuback.reason_codes.push(code);
            }
        }
        r.finish()?;
        Ok(unsuback)
    }

    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let properties_len = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        begin_packet(
            out,
            packet_type::UNSUBACK << 4,
            self.remaining_len(version, properties_len),
        );
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_block_len(out, properties_len);
            self.properties.encode(out);
            for code in &self.reason_codes {
                out.put_u8(*code as u8);
            }
        }
    }

    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let properties_len = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        packet_len(self.remaining_len(version, properties_len))
    }

    fn remaining_len(&self, version: ProtocolVersion, properties_len: usize) -> usize {
        if version.is_v5() {
            2 + block_len(properties_len) + self.reason_codes.len()
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    test_decoder!(UnsubAck -> UnsubAck);

    /// Proves the 3.x layout is the packet id alone, and v5 codes are dropped for it.
    #[test]
    #[rustfmt::skip]
    fn v3_layout() {
        let bytes = [
            0b1011_0000, 2, // UNSUBACK, remaining length 2
            0x00, 0x07,     // packet id 7
        ];
        let u = decode(&bytes, V3).unwrap();
        assert!(u.reason_codes.is_empty());
        assert_eq!(
            &assert_round_trip(&Packet::UnsubAck(u.clone()), V3)[..],
            &bytes
        );
        let with_codes = UnsubAck {
            reason_codes: vec![ReasonCode::NoSubscriptionExisted],
            ..u
        };
        let mut out = BytesMut::new();
        with_codes.encode(ProtocolVersion::V3_1, &mut out);
        assert_eq!(&out[..], &bytes);
        assert_eq!(
            decode(&[0xB0, 3, 0x00, 0x07, 0x00], V3),
            Err(DecodeError::TrailingBytes)
        );
    }

    /// Proves the v5 layout and that every property round trips.
    #[test]
    #[rustfmt::skip]
    fn v5_layout() {
        let bytes = [
            0b1011_0000, 5, // UNSUBACK, remaining length 5
            0x00, 0x07,     // packet id 7
            0x00,           // property length 0
            0x00,           // success
            0x11,           // no subscription existed
        ];
        let u = decode(&bytes, V5).unwrap();
        assert_eq!(
            u.reason_codes,
            [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        );
        assert_eq!(
            &assert_round_trip(&Packet::UnsubAck(u.clone()), V5)[..],
            &bytes
        );
        let every = UnsubAck {
            properties: ReasonProperties {
                reason_string: Some("done".into()),
                user_properties: vec![("x".into(), "y".into())],
            },
            ..u
        };
        assert_round_trip(&Packet::UnsubAck(every), V5);
    }

    /// Proves codes outside UNSUBACK's table ([MQTT-3.11.3-2]) and a missing property block.
    #[test]
    fn violations() {
        assert_eq!(
            decode(&[0xB0, 4, 0x00, 0x01, 0x00, 0x01], V5), // granted QoS 1: a SUBACK code
            Err(DecodeError::InvalidReasonCode {
                packet: 11,
                code: 0x01
            })
        );
        assert_eq!(
            decode(&[0xB0, 2, 0x00, 0x01], V5),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            decode(&[0xB1, 2, 0x00, 0x01], V3),
            Err(DecodeError::ReservedFlags)
        );
    }
}
