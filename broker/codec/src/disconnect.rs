//! DISCONNECT (§3.14).
//!
//! 3.x: no body at all. v5: reason code and properties, both optional: remaining length 0 means
//! Normal disconnection without properties, 1 a reason code without properties
//! ([MQTT-3.14.2-1]).

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{
    opt_len, property_id as id, put_opt, put_reason_tail, put_user_properties, unexpected,
    user_properties_len, v5_reason_tail_len, PropertyReader,
};
use crate::reason::{ReasonCode, ReasonTable};
use crate::strings::Reader;
use crate::types::{ProtocolVersion, UserProperties};

/// A DISCONNECT packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// v5 only; `Success` is "Normal disconnection".
    pub reason_code: ReasonCode,
    /// v5 only.
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (§3.14.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// Only from a client ([MQTT-3.14.2-2]); direction is the core's to check.
    pub session_expiry_interval_s: Option<u32>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub server_reference: Option<ByteString>,
}

impl Disconnect {
    /// A normal disconnection without properties.
    pub fn normal() -> Self {
        Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: Default::default(),
        }
    }

    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != 0 {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let mut disconnect = Disconnect::normal();
        if version.is_v5() && !r.is_empty() {
            disconnect.reason_code =
                ReasonTable::Disconnect.decode(packet_type::DISCONNECT, r.u8()?)?;
            if !r.is_empty() {
                disconnect.properties = DisconnectProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(disconnect)
    }

    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let (properties_len, tail_len) = self.tail_len(version);
        begin_packet(out, packet_type::DISCONNECT << 4, tail_len);
        put_reason_tail(out, tail_len, self.reason_code, properties_len, |out| {
            self.properties.encode(out)
        });
    }

    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        packet_len(self.tail_len(version).1)
    }

    /// The property block's and the reason tail's lengths; 3.x has neither.
    fn tail_len(&self, version: ProtocolVersion) -> (usize, usize) {
        v5_reason_tail_len(version, self.reason_code, || self.properties.encoded_len())
    }
}

impl DisconnectProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = DisconnectProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::SESSION_EXPIRY_INTERVAL => {
                    pr.u32(&mut p.session_expiry_interval_s, identifier)?
                }
                id::REASON_STRING => pr.string(&mut p.reason_string, identifier)?,
                id::USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                id::SERVER_REFERENCE => pr.string(&mut p.server_reference, identifier)?,
                other => return Err(unexpected(other)),
            }
        }
        Ok(p)
    }

    fn encoded_len(&self) -> usize {
        opt_len(&self.session_expiry_interval_s)
            + opt_len(&self.reason_string)
            + user_properties_len(&self.user_properties)
            + opt_len(&self.server_reference)
    }

    fn encode(&self, out: &mut BytesMut) {
        put_opt(
            out,
            id::SESSION_EXPIRY_INTERVAL,
            &self.session_expiry_interval_s,
        );
        put_opt(out, id::REASON_STRING, &self.reason_string);
        put_user_properties(out, &self.user_properties);
        put_opt(out, id::SERVER_REFERENCE, &self.server_reference);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    test_decoder!(Disconnect -> Disconnect);

    /// Proves the three v5 forms (0, 1 and more bytes) and that the encoder picks the shortest.
    #[test]
    #[rustfmt::skip]
    fn v5_forms() {
        let empty = [0b1110_0000, 0]; // DISCONNECT, remaining length 0: normal disconnection
        assert_eq!(decode(&empty, V5), Ok(Disconnect::normal()));
        assert_eq!(
            &assert_round_trip(&Packet::Disconnect(Disconnect::normal()), V5)[..],
            &empty
        );

        let reason_only = [
            0b1110_0000, 1, // DISCONNECT, remaining length 1
            0x04,           // disconnect with will message
        ];
        let d = decode(&reason_only, V5).unwrap();
        assert_eq!(d.reason_code, ReasonCode::DisconnectWithWillMessage);
        assert_eq!(
            &assert_round_trip(&Packet::Disconnect(d), V5)[..],
            &reason_only
        );

        let full = [
            0b1110_0000, 7,               // DISCONNECT, remaining length 7
            0x8E,                         // session taken over
            0x05,                         // property length 5
            0x11, 0x00, 0x00, 0x00, 0x00, //   session expiry interval 0
        ];
        let d = decode(&full, V5).unwrap();
        assert_eq!(d.properties.session_expiry_interval_s, Some(0));
        assert_eq!(&assert_round_trip(&Packet::Disconnect(d), V5)[..], &full);

        let long_normal = [0b1110_0000, 2, 0x00, 0x00]; // reason 0, property length 0
        let d = decode(&long_normal, V5).unwrap();
        assert_eq!(&assert_round_trip(&Packet::Disconnect(d), V5)[..], &empty);
    }

    /// Proves every property round trips, and 3.x writes two bytes whatever the value holds.
    #[test]
    fn round_trip_every_property() {
        let d = Disconnect {
            reason_code: ReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                session_expiry_interval_s: Some(30),
                reason_string: Some("moving".into()),
                user_properties: vec![("k".into(), "v".into())],
                server_reference: Some("b.example:1883".into()),
            },
        };
        assert_round_trip(&Packet::Disconnect(d.clone()), V5);
        for version in [ProtocolVersion::V3_1, V3] {
            let mut out = BytesMut::new();
            d.encode(version, &mut out);
            assert_eq!(&out[..], &[0xE0, 0]);
        }
    }

    /// Proves 3.x has no body, flags are reserved, and codes outside the table are refused.
    #[test]
    fn violations() {
        assert_eq!(
            decode(&[0xE0, 1, 0x00], V3),
            Err(DecodeError::TrailingBytes)
        );
        assert_eq!(decode(&[0xE2, 0], V5), Err(DecodeError::ReservedFlags));
        assert_eq!(
            decode(&[0xE0, 1, 0x01], V5), // granted QoS 1: not a DISCONNECT code
            Err(DecodeError::InvalidReasonCode {
                packet: 14,
                code: 0x01
            })
        );
        assert_eq!(
            decode(&[0xE0, 4, 0x00, 0x02, 0x24, 0x01], V5), // maximum QoS: a CONNACK property
            Err(DecodeError::PropertyNotAllowed { id: 0x24 })
        );
        assert_eq!(
            decode(&[0xE0, 4, 0x00, 0x05, 0x11, 0x00], V5), // property block past the packet
            Err(DecodeError::UnexpectedEnd)
        );
    }
}
