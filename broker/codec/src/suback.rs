//! SUBACK (§3.9): one reason code per topic filter of the SUBSCRIBE, in order.
//!
//! Layout: packet id, [v5: properties], reason codes to the end of the packet. 3.x knows only
//! granted QoS 0/1/2 and 0x80 (failure); any v5 failure is written as 0x80 there.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{block_len, put_block_len, ReasonProperties};
use crate::reason::{ReasonCode, ReasonTable};
use crate::strings::Reader;
use crate::types::{PacketId, ProtocolVersion};

/// A SUBACK packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// `Success` is "Granted QoS 0".
    pub reason_codes: Vec<ReasonCode>,
    /// v5 only.
    pub properties: ReasonProperties,
}

impl SubAck {
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != 0 {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            ReasonProperties::decode(&mut r)?
        } else {
            ReasonProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            reason_codes.push(if version.is_v5() {
                ReasonTable::SubAck.decode(packet_type::SUBACK, code)?
            } else {
                ReasonCode::from_v3_suback_code(code).ok_or(DecodeError::InvalidReasonCode {
                    packet: packet_type::SUBACK,
                    code,
                })?
            });
        }
        Ok(SubAck {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let properties_len = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        begin_packet(
            out,
            packet_type::SUBACK << 4,
            self.remaining_len(version, properties_len),
        );
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_block_len(out, properties_len);
            self.properties.encode(out);
            for code in &self.reason_codes {
                out.put_u8(*code as u8);
            }
        } else {
            for code in &self.reason_codes {
                out.put_u8(code.v3_suback_code());
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
        let properties = if version.is_v5() {
            block_len(properties_len)
        } else {
            0
        };
        2 + properties + self.reason_codes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    test_decoder!(SubAck -> SubAck);

    /// Proves the 3.1.1 layout and its four codes.
    #[test]
    #[rustfmt::skip]
    fn v3_layout() {
        let bytes = [
            0b1001_0000, 6, // SUBACK, remaining length 6
            0x00, 0x05,     // packet id 5
            0x00,           // granted QoS 0
            0x01,           // granted QoS 1
            0x02,           // granted QoS 2
            0x80,           // failure
        ];
        let s = decode(&bytes, V3).unwrap();
        assert_eq!(
            s.reason_codes,
            [
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError
            ]
        );
        for version in [ProtocolVersion::V3_1, V3] {
            assert_eq!(
                &assert_round_trip(&Packet::SubAck(s.clone()), version)[..],
                &bytes
            );
        }
    }

    /// Proves v5 failure codes become 0x80 for 3.x clients, and properties are dropped.
    #[test]
    fn v5_codes_for_v3() {
        let s = SubAck {
            packet_id: PacketId::new(1).unwrap(),
            reason_codes: vec![
                ReasonCode::GrantedQoS1,
                ReasonCode::NotAuthorized,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
            properties: ReasonProperties {
                reason_string: Some("no".into()),
                user_properties: vec![],
            },
        };
        let mut out = BytesMut::new();
        s.encode(V3, &mut out);
        assert_eq!(&out[..], &[0x90, 5, 0x00, 0x01, 0x01, 0x80, 0x80]);
    }

    /// Proves the v5 layout with properties and every property round trips.
    #[test]
    #[rustfmt::skip]
    fn v5_layout() {
        let bytes = [
            0b1001_0000, 8,         // SUBACK, remaining length 8
            0x00, 0x05,             // packet id 5
            0x04,                   // property length 4
            0x1F, 0x00, 0x01, b'x', //   reason string "x"
            0x9E,                   // shared subscriptions not supported
        ];
        let s = decode(&bytes, V5).unwrap();
        assert_eq!(
            s.reason_codes,
            [ReasonCode::SharedSubscriptionsNotSupported]
        );
        assert_eq!(
            &assert_round_trip(&Packet::SubAck(s.clone()), V5)[..],
            &bytes
        );
        let every = SubAck {
            properties: ReasonProperties {
                reason_string: Some("r".into()),
                user_properties: vec![("a".into(), "b".into()), ("a".into(), "b".into())],
            },
            ..s
        };
        assert_round_trip(&Packet::SubAck(every), V5);
    }

    /// Proves codes outside SUBACK's tables are refused, per version ([MQTT-3.9.3-2]).
    #[test]
    fn invalid_codes() {
        assert_eq!(
            decode(&[0x90, 3, 0x00, 0x01, 0x87], V3), // 0x87 exists only in v5
            Err(DecodeError::InvalidReasonCode {
                packet: 9,
                code: 0x87
            })
        );
        assert_eq!(
            decode(&[0x90, 4, 0x00, 0x01, 0x00, 0x03], V5), // 0x03 is not a reason code
            Err(DecodeError::InvalidReasonCode {
                packet: 9,
                code: 0x03
            })
        );
        assert_eq!(
            decode(&[0x90, 4, 0x00, 0x01, 0x00, 0x8E], V5), // session taken over: DISCONNECT's
            Err(DecodeError::InvalidReasonCode {
                packet: 9,
                code: 0x8E
            })
        );
        assert_eq!(
            decode(&[0x92, 3, 0x00, 0x01, 0x00], V3), // fixed header flags 0010
            Err(DecodeError::ReservedFlags)
        );
    }
}
