//! CONNACK (§3.2): the server's answer to CONNECT.
//!
//! Layout: acknowledge flags (session present), reason code (a v3 "return code" 0..=5),
//! [v5: properties]. In MQTT 3.1 the flags byte is reserved and there is no session present.

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{
    block_len, opt_len, property_id as id, put_block_len, put_opt, put_user_properties, redact,
    unexpected, user_properties_len, PropertyReader,
};
use crate::reason::{ReasonCode, ReasonTable};
use crate::strings::Reader;
use crate::types::{ProtocolVersion, QoS, UserProperties};

const SESSION_PRESENT: u8 = 0b0000_0001;

/// A CONNACK packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Written only when the reason is Success ([MQTT-3.2.2-6]) and the version has it.
    pub session_present: bool,
    /// For 3.x, written as [`ReasonCode::v3_connack_return_code`].
    pub reason_code: ReasonCode,
    /// v5 only.
    pub properties: ConnAckProperties,
}

/// CONNACK properties (§3.2.2.3).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// 0 or 1; a server that supports QoS 2 leaves it out (§3.2.2.3.4).
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive_s: Option<u16>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

impl ConnAck {
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != 0 {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let ack_flags = r.u8()?;
        let session_present = match version {
            // 3.1: "Reserved values. Not used." Nothing to read, nothing to refuse.
            ProtocolVersion::V3_1 => false,
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => {
                if ack_flags & !SESSION_PRESENT != 0 {
                    return Err(DecodeError::ConnAckReservedFlags);
                }
                ack_flags & SESSION_PRESENT != 0
            }
        };
        let code = r.u8()?;
        let reason_code = if version.is_v5() {
            ReasonTable::ConnAck.decode(packet_type::CONNACK, code)?
        } else {
            ReasonCode::from_v3_connack_return_code(code).ok_or(DecodeError::InvalidReasonCode {
                packet: packet_type::CONNACK,
                code,
            })?
        };
        if session_present && reason_code != ReasonCode::Success {
            return Err(DecodeError::ConnAckSessionPresentWithError);
        }
        let properties = if version.is_v5() {
            ConnAckProperties::decode(&mut r)?
        } else {
            ConnAckProperties::default()
        };
        r.finish()?;
        Ok(ConnAck {
            session_present,
            reason_code,
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
            packet_type::CONNACK << 4,
            remaining_len(version, properties_len),
        );
        let session_present = self.session_present
            && self.reason_code == ReasonCode::Success
            && version != ProtocolVersion::V3_1;
        out.put_u8(if session_present { SESSION_PRESENT } else { 0 });
        if version.is_v5() {
            out.put_u8(self.reason_code as u8);
            put_block_len(out, properties_len);
            self.properties.encode(out);
        } else {
            out.put_u8(self.reason_code.v3_connack_return_code());
        }
    }

    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let properties_len = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        packet_len(remaining_len(version, properties_len))
    }
}

fn remaining_len(version: ProtocolVersion, properties_len: usize) -> usize {
    if version.is_v5() {
        2 + block_len(properties_len)
    } else {
        2
    }
}

impl ConnAckProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = ConnAckProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::SESSION_EXPIRY_INTERVAL => {
                    pr.u32(&mut p.session_expiry_interval_s, identifier)?
                }
                id::RECEIVE_MAXIMUM => pr.nonzero_u16(&mut p.receive_maximum, identifier)?,
                id::MAXIMUM_QOS => pr.maximum_qos(&mut p.maximum_qos, identifier)?,
                id::RETAIN_AVAILABLE => pr.bool(&mut p.retain_available, identifier)?,
                id::MAXIMUM_PACKET_SIZE => {
                    pr.nonzero_u32(&mut p.maximum_packet_size, identifier)?
                }
                id::ASSIGNED_CLIENT_IDENTIFIER => {
                    pr.string(&mut p.assigned_client_identifier, identifier)?
                }
                id::TOPIC_ALIAS_MAXIMUM => pr.u16(&mut p.topic_alias_maximum, identifier)?,
                id::REASON_STRING => pr.string(&mut p.reason_string, identifier)?,
                id::USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    pr.bool(&mut p.wildcard_subscription_available, identifier)?
                }
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    pr.bool(&mut p.subscription_identifiers_available, identifier)?
                }
                id::SHARED_SUBSCRIPTION_AVAILABLE => {
                    pr.bool(&mut p.shared_subscription_available, identifier)?
                }
                id::SERVER_KEEP_ALIVE => pr.u16(&mut p.server_keep_alive_s, identifier)?,
                id::RESPONSE_INFORMATION => pr.string(&mut p.response_information, identifier)?,
                id::SERVER_REFERENCE => pr.string(&mut p.server_reference, identifier)?,
                id::AUTHENTICATION_METHOD => pr.string(&mut p.authentication_method, identifier)?,
                id::AUTHENTICATION_DATA => pr.binary(&mut p.authentication_data, identifier)?,
                other => return Err(unexpected(other)),
            }
        }
        Ok(p)
    }

    fn encoded_len(&self) -> usize {
        opt_len(&self.session_expiry_interval_s)
            + opt_len(&self.receive_maximum)
            + opt_len(&self.maximum_qos)
            + opt_len(&self.retain_available)
            + opt_len(&self.maximum_packet_size)
            + opt_len(&self.assigned_client_identifier)
            + opt_len(&self.topic_alias_maximum)
            + opt_len(&self.reason_string)
            + user_properties_len(&self.user_properties)
            + opt_len(&self.wildcard_subscription_available)
            + opt_len(&self.subscription_identifiers_available)
            + opt_len(&self.shared_subscription_available)
            + opt_len(&self.server_keep_alive_s)
            + opt_len(&self.response_information)
            + opt_len(&self.server_reference)
            + opt_len(&self.authentication_method)
            + opt_len(&self.authentication_data)
    }

    fn encode(&self, out: &mut BytesMut) {
        put_opt(
            out,
            id::SESSION_EXPIRY_INTERVAL,
            &self.session_expiry_interval_s,
        );
        put_opt(out, id::RECEIVE_MAXIMUM, &self.receive_maximum);
        put_opt(out, id::MAXIMUM_QOS, &self.maximum_qos);
        put_opt(out, id::RETAIN_AVAILABLE, &self.retain_available);
        put_opt(out, id::MAXIMUM_PACKET_SIZE, &self.maximum_packet_size);
        put_opt(
            out,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        put_opt(out, id::TOPIC_ALIAS_MAXIMUM, &self.topic_alias_maximum);
        put_opt(out, id::REASON_STRING, &self.reason_string);
        put_user_properties(out, &self.user_properties);
        put_opt(
            out,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            &self.wildcard_subscription_available,
        );
        put_opt(
            out,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            &self.subscription_identifiers_available,
        );
        put_opt(
            out,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            &self.shared_subscription_available,
        );
        put_opt(out, id::SERVER_KEEP_ALIVE, &self.server_keep_alive_s);
        put_opt(out, id::RESPONSE_INFORMATION, &self.response_information);
        put_opt(out, id::SERVER_REFERENCE, &self.server_reference);
        put_opt(out, id::AUTHENTICATION_METHOD, &self.authentication_method);
        put_opt(out, id::AUTHENTICATION_DATA, &self.authentication_data);
    }
}

/// Authentication data is a credential: never shown.
impl fmt::Debug for ConnAckProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnAckProperties")
            .field("session_expiry_interval_s", &self.session_expiry_interval_s)
            .field("receive_maximum", &self.receive_maximum)
            .field("maximum_qos", &self.maximum_qos)
            .field("retain_available", &self.retain_available)
            .field("maximum_packet_size", &self.maximum_packet_size)
            .field(
                "assigned_client_identifier",
                &self.assigned_client_identifier,
            )
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field("reason_string", &self.reason_string)
            .field("user_properties", &self.user_properties)
            .field(
                "wildcard_subscription_available",
                &self.wildcard_subscription_available,
            )
            .field(
                "subscription_identifiers_available",
                &self.subscription_identifiers_available,
            )
            .field(
                "shared_subscription_available",
                &self.shared_subscription_available,
            )
            .field("server_keep_alive_s", &self.server_keep_alive_s)
            .field("response_information", &self.response_information)
            .field("server_reference", &self.server_reference)
            .field("authentication_method", &self.authentication_method)
            .field("authentication_data", &redact(&self.authentication_data))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    test_decoder!(ConnAck -> ConnAck);

    fn accepted(session_present: bool) -> ConnAck {
        ConnAck {
            session_present,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        }
    }

    /// Proves the 3.1.1 layout: four bytes, session present and a return code.
    #[test]
    #[rustfmt::skip]
    fn v3_1_1_layout() {
        let bytes = [
            0b0010_0000, 2, // CONNACK, remaining length 2
            0x01,           // session present
            0x00,           // return code 0: accepted
        ];
        let c = decode(&bytes, ProtocolVersion::V3_1_1).unwrap();
        assert_eq!(c, accepted(true));
        let out = assert_round_trip(&Packet::ConnAck(c), ProtocolVersion::V3_1_1);
        assert_eq!(&out[..], &bytes);
    }

    /// Proves 3.1 has no session present: the flags byte is written 0 and ignored on decode.
    #[test]
    #[rustfmt::skip]
    fn v3_1_has_no_session_present() {
        let c = decode(
            &[
                0b0010_0000, 2, // CONNACK, remaining length 2
                0x01,           // reserved in 3.1
                0x05,           // return code 5: not authorized
            ],
            ProtocolVersion::V3_1,
        )
        .unwrap();
        assert_eq!(
            (c.session_present, c.reason_code),
            (false, ReasonCode::NotAuthorized)
        );
        let mut out = BytesMut::new();
        accepted(true).encode(ProtocolVersion::V3_1, &mut out);
        assert_eq!(&out[..], &[0x20, 2, 0x00, 0x00]);
    }

    /// Proves the v3 return code mapping on encode, and that session present is dropped from a
    /// refusal ([MQTT-3.2.2-6]).
    #[test]
    fn v3_return_codes_on_encode() {
        for (reason, code) in [
            (ReasonCode::UnsupportedProtocolVersion, 1),
            (ReasonCode::ClientIdentifierNotValid, 2),
            (ReasonCode::ServerBusy, 3),
            (ReasonCode::BadUserNameOrPassword, 4),
            (ReasonCode::NotAuthorized, 5),
            (ReasonCode::Banned, 3),
        ] {
            let c = ConnAck {
                reason_code: reason,
                ..accepted(true)
            };
            let mut out = BytesMut::new();
            c.encode(ProtocolVersion::V3_1_1, &mut out);
            assert_eq!(&out[..], &[0x20, 2, 0x00, code], "{reason:?}");
        }
    }

    /// Proves the v5 layout: flags, reason code, property block.
    #[test]
    #[rustfmt::skip]
    fn v5_layout() {
        let c = decode(
            &[
                0b0010_0000, 9,   // CONNACK, remaining length 9
                0x00,             // no session present
                0x00,             // reason: Success
                0x06,             // property length 6
                0x24, 0x01,       //   maximum QoS 1
                0x13, 0x00, 0x1E, //   server keep alive 30 s
                0x25,             //   retain available ...
                      // ... its value is missing: the property runs past the block
            ],
            ProtocolVersion::V5,
        );
        assert_eq!(c, Err(DecodeError::UnexpectedEnd));
        let c = decode(
            &[
                0b0010_0000, 10,  // CONNACK, remaining length 10
                0x00,             // no session present
                0x00,             // reason: Success
                0x07,             // property length 7
                0x24, 0x01,       //   maximum QoS 1
                0x13, 0x00, 0x1E, //   server keep alive 30 s
                0x25, 0x00,       //   retain available: no
            ],
            ProtocolVersion::V5,
        )
        .unwrap();
        assert_eq!(c.properties.maximum_qos, Some(QoS::AtLeastOnce));
        assert_eq!(c.properties.server_keep_alive_s, Some(30));
        assert_eq!(c.properties.retain_available, Some(false));
        assert_round_trip(&Packet::ConnAck(c), ProtocolVersion::V5);
    }

    /// Proves every CONNACK property survives a round trip.
    #[test]
    fn round_trip_every_property() {
        let c = ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties {
                session_expiry_interval_s: Some(7),
                receive_maximum: NonZeroU16::new(65_535),
                maximum_qos: Some(QoS::AtMostOnce),
                retain_available: Some(true),
                maximum_packet_size: NonZeroU32::new(268_435_460),
                assigned_client_identifier: Some("auto-1".into()),
                topic_alias_maximum: Some(10),
                reason_string: Some("welcome".into()),
                user_properties: vec![("region".into(), "eu".into())],
                wildcard_subscription_available: Some(false),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive_s: Some(120),
                response_information: Some("resp/".into()),
                server_reference: Some("other:1883".into()),
                authentication_method: Some("SCRAM-SHA-256".into()),
                authentication_data: Some(Bytes::from_static(b"server-final")),
            },
        };
        assert_round_trip(&Packet::ConnAck(c.clone()), ProtocolVersion::V5);
        // The same packet for a 3.1.1 client is four bytes.
        let mut out = BytesMut::new();
        c.encode(ProtocolVersion::V3_1_1, &mut out);
        assert_eq!(&out[..], &[0x20, 2, 0x01, 0x00]);
    }

    /// Proves [MQTT-3.2.2-1] and [MQTT-3.2.2-6].
    #[test]
    fn flag_violations() {
        assert_eq!(
            decode(&[0x20, 2, 0b0000_0010, 0x00], ProtocolVersion::V3_1_1), // reserved flag bit 1
            Err(DecodeError::ConnAckReservedFlags)
        );
        assert_eq!(
            decode(&[0x20, 2, 0x01, 0x04], ProtocolVersion::V3_1_1), // session present, refused
            Err(DecodeError::ConnAckSessionPresentWithError)
        );
        assert_eq!(
            decode(&[0x20, 3, 0x01, 0x87, 0x00], ProtocolVersion::V5), // same, in v5
            Err(DecodeError::ConnAckSessionPresentWithError)
        );
        assert_eq!(
            decode(&[0x21, 2, 0x00, 0x00], ProtocolVersion::V3_1_1), // fixed header flag set
            Err(DecodeError::ReservedFlags)
        );
    }

    /// Proves return and reason codes outside CONNACK's tables are refused.
    #[test]
    fn invalid_codes() {
        assert_eq!(
            decode(&[0x20, 2, 0x00, 0x06], ProtocolVersion::V3_1_1), // return code 6
            Err(DecodeError::InvalidReasonCode { packet: 2, code: 6 })
        );
        assert_eq!(
            decode(&[0x20, 3, 0x00, 0x8E, 0x00], ProtocolVersion::V5), // session taken over
            Err(DecodeError::InvalidReasonCode {
                packet: 2,
                code: 0x8E
            })
        );
    }

    /// Proves property values CONNACK forbids: maximum QoS 2, booleans above 1, duplicates,
    /// and identifiers of other packets.
    #[test]
    fn v5_property_violations() {
        for (properties, error) in [
            (
                &[0x24, 0x02][..],
                DecodeError::InvalidPropertyValue { id: 0x24 },
            ),
            (
                &[0x28, 0x02][..],
                DecodeError::InvalidPropertyValue { id: 0x28 },
            ),
            (
                &[0x21, 0x00, 0x00][..],
                DecodeError::InvalidPropertyValue { id: 0x21 },
            ),
            (
                &[0x13, 0, 1, 0x13, 0, 1][..],
                DecodeError::DuplicateProperty { id: 0x13 },
            ),
            (
                &[0x17, 0x01][..],
                DecodeError::PropertyNotAllowed { id: 0x17 },
            ),
        ] {
            let mut bytes = vec![0x20, 0, 0x00, 0x00, properties.len() as u8];
            bytes.extend_from_slice(properties);
            bytes[1] = (bytes.len() - 2) as u8;
            assert_eq!(
                Packet::decode(Bytes::from(bytes), ProtocolVersion::V5),
                Err(error),
                "{properties:x?}"
            );
        }
    }

    /// Proves the v3 body is exactly two bytes and the v5 property block is required.
    #[test]
    fn lengths() {
        assert_eq!(
            decode(&[0x20, 3, 0x00, 0x00, 0x00], ProtocolVersion::V3_1_1),
            Err(DecodeError::TrailingBytes)
        );
        assert_eq!(
            decode(&[0x20, 2, 0x00, 0x00], ProtocolVersion::V5),
            Err(DecodeError::UnexpectedEnd)
        );
    }
}
