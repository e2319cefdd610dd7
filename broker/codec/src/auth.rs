//! AUTH (§3.15): extended authentication, MQTT 5 only.
//!
//! Layout: reason code and properties, both optional as in DISCONNECT: remaining length 0 means
//! Success without properties.
//!
//! §3.15.2.2.2 makes an AUTH without an Authentication Method a Protocol Error, yet allows the
//! empty form. The codec accepts both forms and leaves the method check to the core, which must
//! compare it with the CONNECT's method anyway (§4.12).

use std::fmt;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{
    opt_len, property_id as id, put_opt, put_reason_tail, put_user_properties, reason_tail_len,
    redact, unexpected, user_properties_len, PropertyReader,
};
use crate::reason::{ReasonCode, ReasonTable};
use crate::strings::Reader;
use crate::types::{ProtocolVersion, UserProperties};

/// An AUTH packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Success, ContinueAuthentication or ReAuthenticate.
    pub reason_code: ReasonCode,
    pub properties: AuthProperties,
}

/// AUTH properties (§3.15.2.2).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
}

impl Auth {
    /// Decodes an AUTH body. Under 3.x there is no AUTH packet:
    /// [`DecodeError::InvalidPacketType`].
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if !version.is_v5() {
            return Err(DecodeError::InvalidPacketType);
        }
        if flags != 0 {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let mut auth = Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        };
        if !r.is_empty() {
            auth.reason_code = ReasonTable::Auth.decode(packet_type::AUTH, r.u8()?)?;
            if !r.is_empty() {
                auth.properties = AuthProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(auth)
    }

    /// Writes the whole packet in its shortest form.
    ///
    /// # Panics
    /// If `version` is not v5: 3.x has no AUTH packet, and sending one is a bug.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        assert!(version.is_v5(), "AUTH exists only in MQTT 5");
        let properties_len = self.properties.encoded_len();
        let tail_len = reason_tail_len(self.reason_code, properties_len);
        begin_packet(out, packet_type::AUTH << 4, tail_len);
        put_reason_tail(out, tail_len, self.reason_code, properties_len, |out| {
            self.properties.encode(out)
        });
    }

    pub fn encoded_len(&self, _version: ProtocolVersion) -> usize {
        packet_len(reason_tail_len(
            self.reason_code,
            self.properties.encoded_len(),
        ))
    }
}

impl AuthProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = AuthProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::AUTHENTICATION_METHOD => pr.string(&mut p.authentication_method, identifier)?,
                id::AUTHENTICATION_DATA => pr.binary(&mut p.authentication_data, identifier)?,
                id::REASON_STRING => pr.string(&mut p.reason_string, identifier)?,
                id::USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                other => return Err(unexpected(other)),
            }
        }
        Ok(p)
    }

    fn encoded_len(&self) -> usize {
        opt_len(&self.authentication_method)
            + opt_len(&self.authentication_data)
            + opt_len(&self.reason_string)
            + user_properties_len(&self.user_properties)
    }

    fn encode(&self, out: &mut BytesMut) {
        put_opt(out, id::AUTHENTICATION_METHOD, &self.authentication_method);
        put_opt(out, id::AUTHENTICATION_DATA, &self.authentication_data);
        put_opt(out, id::REASON_STRING, &self.reason_string);
        put_user_properties(out, &self.user_properties);
    }
}

/// Authentication data is a credential: never shown.
impl fmt::Debug for AuthProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthProperties")
            .field("authentication_method", &self.authentication_method)
            .field("authentication_data", &redact(&self.authentication_data))
            .field("reason_string", &self.reason_string)
            .field("user_properties", &self.user_properties)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, Packet};

    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn decode(bytes: &[u8]) -> Result<Auth, DecodeError> {
        match Packet::decode(Bytes::copy_from_slice(bytes), V5)? {
            Packet::Auth(a) => Ok(a),
            other => panic!("decoded {other:?}"),
        }
    }

    /// Proves the short and full forms, field by field.
    #[test]
    #[rustfmt::skip]
    fn layouts() {
        let empty = [0b1111_0000, 0]; // AUTH, remaining length 0: Success
        let success = Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        };
        assert_eq!(decode(&empty), Ok(success.clone()));
        assert_eq!(&assert_round_trip(&Packet::Auth(success), V5)[..], &empty);

        let full = [
            0b1111_0000, 14,                                // AUTH, remaining length 14
            0x18,                                           // continue authentication
            0x0C,                                           // property length 12
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', //   authentication method "SCRAM"
            0x16, 0x00, 0x01, 0x2A,                         //   authentication data [0x2A]
        ];
        let a = decode(&full).unwrap();
        assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
        assert_eq!(a.properties.authentication_method.as_deref(), Some("SCRAM"));
        assert_eq!(&assert_round_trip(&Packet::Auth(a), V5)[..], &full);
    }

    /// Proves every property round trips, and Debug hides the authentication data.
    #[test]
    fn round_trip_every_property() {
        let a = Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties {
                authentication_method: Some("KERBEROS".into()),
                authentication_data: Some(Bytes::from_static(b"ticket-bytes")),
                reason_string: Some("again".into()),
                user_properties: vec![("a".into(), "b".into())],
            },
        };
        assert_round_trip(&Packet::Auth(a.clone()), V5);
        let shown = format!("{a:?}");
        assert!(!shown.contains("ticket"), "{shown}");
        assert!(
            shown.contains("authentication_data: Some(<redacted>)"),
            "{shown}"
        );
    }

    /// Proves [MQTT-3.15.1-1], [MQTT-3.15.2-1], properties of other packets, and that AUTH does
    /// not exist before v5.
    #[test]
    fn violations() {
        assert_eq!(decode(&[0xF1, 0]), Err(DecodeError::ReservedFlags));
        assert_eq!(
            decode(&[0xF0, 1, 0x87]), // not authorized: a CONNACK code
            Err(DecodeError::InvalidReasonCode {
                packet: 15,
                code: 0x87
            })
        );
        assert_eq!(
            decode(&[0xF0, 4, 0x18, 0x02, 0x17, 0x01]), // request problem information
            Err(DecodeError::PropertyNotAllowed { id: 0x17 })
        );
        assert_eq!(
            Auth::decode(0, Bytes::new(), ProtocolVersion::V3_1_1),
            Err(DecodeError::InvalidPacketType)
        );
    }
}
