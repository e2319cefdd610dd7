//! CONNECT (§3.1): the first packet of a connection. It carries its own protocol level, so it is
//! decoded and encoded in `self.protocol` whatever version the caller passes.
//!
//! Layout: protocol name, level, connect flags, keep alive, [v5: properties], client id,
//! [will: [v5: will properties], will topic, will payload], [user name], [password].

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{
    block_len, opt_len, property_id as id, put_block_len, put_opt, put_user_properties, redact,
    unexpected, user_properties_len, MessageProperties, PropertyReader,
};
use crate::strings::{prefixed_len, put_binary, put_string, Reader};
use crate::types::{ProtocolVersion, QoS, UserProperties};

const FLAG_RESERVED: u8 = 0b0000_0001;
const FLAG_CLEAN_START: u8 = 0b0000_0010;
const FLAG_WILL: u8 = 0b0000_0100;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_QOS: u8 = 0b0001_1000;
const FLAG_WILL_RETAIN: u8 = 0b0010_0000;
const FLAG_PASSWORD: u8 = 0b0100_0000;
const FLAG_USERNAME: u8 = 0b1000_0000;

/// A CONNECT packet.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// "Clean Session" in 3.x.
    pub clean_start: bool,
    pub keep_alive_s: u16,
    /// May be empty; whether that is allowed is the core's decision ([MQTT-3.1.3-6]).
    pub client_id: ByteString,
    pub will: Option<Will>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    /// Always empty for 3.x.
    pub properties: ConnectProperties,
}

/// CONNECT properties (§3.1.2.11).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    pub session_expiry_interval_s: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

/// The Will Message of a CONNECT (§3.1.2.5, §3.1.3.2).
#[derive(Clone, PartialEq, Eq)]
pub struct Will {
    /// A topic name: not empty, no wildcards.
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// v5 only.
    pub delay_interval_s: Option<u32>,
    /// v5 only.
    pub properties: MessageProperties,
}

impl Connect {
    /// Decodes a CONNECT body. `_version` is ignored: CONNECT carries its own protocol level.
    pub fn decode(flags: u8, body: Bytes, _version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != 0 {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let protocol = decode_protocol(&mut r)?;
        let connect_flags = r.u8()?;
        check_connect_flags(connect_flags, protocol)?;
        let keep_alive_s = r.u16()?;
        let properties = if protocol.is_v5() {
            ConnectProperties::decode(&mut r)?
        } else {
            ConnectProperties::default()
        };
        let client_id = r.string()?;
        let will = if connect_flags & FLAG_WILL != 0 {
            let qos = QoS::try_from((connect_flags & FLAG_WILL_QOS) >> FLAG_WILL_QOS_SHIFT)
                .map_err(|_| DecodeError::WillQoS3)?;
            let retain = connect_flags & FLAG_WILL_RETAIN != 0;
            Some(Will::decode(&mut r, protocol, qos, retain)?)
        } else {
            None
        };
        let username = if connect_flags & FLAG_USERNAME != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let password = if connect_flags & FLAG_PASSWORD != 0 {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            protocol,
            clean_start: connect_flags & FLAG_CLEAN_START != 0,
            keep_alive_s,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// Writes the whole packet in `self.protocol` (`_version` is ignored, as on decode).
    pub fn encode(&self, _version: ProtocolVersion, out: &mut BytesMut) {
        let protocol = self.protocol;
        begin_packet(out, packet_type::CONNECT << 4, self.remaining_len());
        put_string(out, protocol.protocol_name());
        out.put_u8(protocol.level());
        out.put_u8(self.connect_flags());
        out.put_u16(self.keep_alive_s);
        if protocol.is_v5() {
            put_block_len(out, self.properties.encoded_len());
            self.properties.encode(out);
        }
        put_string(out, &self.client_id);
        if let Some(will) = &self.will {
            will.encode(protocol, out);
        }
        if let Some(username) = &self.username {
            put_string(out, username);
        }
        if let Some(password) = &self.password {
            put_binary(out, password);
        }
    }

    /// Length of the whole packet in `self.protocol`.
    pub fn encoded_len(&self, _version: ProtocolVersion) -> usize {
        packet_len(self.remaining_len())
    }

    fn remaining_len(&self) -> usize {
        let protocol = self.protocol;
        let mut len = prefixed_len(protocol.protocol_name().as_bytes()) + 1 + 1 + 2;
        if protocol.is_v5() {
            len += block_len(self.properties.encoded_len());
        }
        len += prefixed_len(self.client_id.as_bytes());
        if let Some(will) = &self.will {
            len += will.encoded_len(protocol);
        }
        len += self
            .username
            .as_ref()
            .map_or(0, |u| prefixed_len(u.as_bytes()));
        len += self.password.as_ref().map_or(0, |p| prefixed_len(p));
        len
    }

    fn connect_flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << FLAG_WILL_QOS_SHIFT);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        flags
    }
}

/// Protocol name and level (§3.1.2.1, §3.1.2.2).
fn decode_protocol(r: &mut Reader<'_>) -> Result<ProtocolVersion, DecodeError> {
    let name = r.prefixed_raw()?;
    let is_mqtt = match name {
        b"MQTT" => true,
        b"MQIsdp" => false,
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    match (is_mqtt, r.u8()?) {
        (true, 4) => Ok(ProtocolVersion::V3_1_1),
        (true, 5) => Ok(ProtocolVersion::V5),
        (false, 3) => Ok(ProtocolVersion::V3_1),
        (_, level) => Err(DecodeError::UnsupportedProtocolVersion { level }),
    }
}

/// The rules on the Connect Flags byte that need no other field (§3.1.2.3 - §3.1.2.9).
fn check_connect_flags(flags: u8, protocol: ProtocolVersion) -> Result<(), DecodeError> {
    if flags & FLAG_RESERVED != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    if flags & FLAG_WILL == 0 && flags & (FLAG_WILL_QOS | FLAG_WILL_RETAIN) != 0 {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    // 3.1 and 3.1.1 forbid a password without a user name; MQTT 5 allows it (§3.1.2.9).
    if !protocol.is_v5() && flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    Ok(())
}

impl ConnectProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = ConnectProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::SESSION_EXPIRY_INTERVAL => {
                    pr.u32(&mut p.session_expiry_interval_s, identifier)?
                }
                id::RECEIVE_MAXIMUM => pr.nonzero_u16(&mut p.receive_maximum, identifier)?,
                id::MAXIMUM_PACKET_SIZE => {
                    pr.nonzero_u32(&mut p.maximum_packet_size, identifier)?
                }
                id::TOPIC_ALIAS_MAXIMUM => pr.u16(&mut p.topic_alias_maximum, identifier)?,
                id::REQUEST_RESPONSE_INFORMATION => {
                    pr.bool(&mut p.request_response_information, identifier)?
                }
                id::REQUEST_PROBLEM_INFORMATION => {
                    pr.bool(&mut p.request_problem_information, identifier)?
                }
                id::USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                id::AUTHENTICATION_METHOD => pr.string(&mut p.authentication_method, identifier)?,
                id::AUTHENTICATION_DATA => pr.binary(&mut p.authentication_data, identifier)?,
                other => return Err(unexpected(other)),
            }
        }
        // §3.1.2.11.10: "It is a Protocol Error to include Authentication Data if there is no
        // Authentication Method".
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        Ok(p)
    }

    fn encoded_len(&self) -> usize {
        opt_len(&self.session_expiry_interval_s)
            + opt_len(&self.receive_maximum)
            + opt_len(&self.maximum_packet_size)
            + opt_len(&self.topic_alias_maximum)
            + opt_len(&self.request_response_information)
            + opt_len(&self.request_problem_information)
            + user_properties_len(&self.user_properties)
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
        put_opt(out, id::MAXIMUM_PACKET_SIZE, &self.maximum_packet_size);
        put_opt(out, id::TOPIC_ALIAS_MAXIMUM, &self.topic_alias_maximum);
        put_opt(
            out,
            id::REQUEST_RESPONSE_INFORMATION,
            &self.request_response_information,
        );
        put_opt(
            out,
            id::REQUEST_PROBLEM_INFORMATION,
            &self.request_problem_information,
        );
        put_user_properties(out, &self.user_properties);
        put_opt(out, id::AUTHENTICATION_METHOD, &self.authentication_method);
        put_opt(out, id::AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Will {
    fn decode(
        r: &mut Reader<'_>,
        protocol: ProtocolVersion,
        qos: QoS,
        retain: bool,
    ) -> Result<Self, DecodeError> {
        let mut delay_interval_s = None;
        let mut properties = MessageProperties::default();
        // In v5 the will properties come before the will topic (§3.1.3.2).
        if protocol.is_v5() {
            let mut pr = PropertyReader::new(r)?;
            while let Some(identifier) = pr.next_id()? {
                if identifier == id::WILL_DELAY_INTERVAL {
                    pr.u32(&mut delay_interval_s, identifier)?;
                } else if !properties.read(&mut pr, identifier)? {
                    return Err(unexpected(identifier));
                }
            }
        }
        let topic = r.topic_name(DecodeError::WillTopicWildcard)?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        let payload = r.binary()?;
        Ok(Will {
            topic,
            payload,
            qos,
            retain,
            delay_interval_s,
            properties,
        })
    }

    fn properties_len(&self) -> usize {
        opt_len(&self.delay_interval_s) + self.properties.encoded_len()
    }

    fn encoded_len(&self, protocol: ProtocolVersion) -> usize {
        let properties = if protocol.is_v5() {
            block_len(self.properties_len())
        } else {
            0
        };
        properties + prefixed_len(self.topic.as_bytes()) + prefixed_len(&self.payload)
    }

    fn encode(&self, protocol: ProtocolVersion, out: &mut BytesMut) {
        if protocol.is_v5() {
            put_block_len(out, self.properties_len());
            put_opt(out, id::WILL_DELAY_INTERVAL, &self.delay_interval_s);
            self.properties.encode(out);
        }
        put_string(out, &self.topic);
        put_binary(out, &self.payload);
    }
}

/// Never shows the password.
impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("properties", &self.properties)
            .finish()
    }
}

/// Authentication data is a credential: never shown.
impl fmt::Debug for ConnectProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectProperties")
            .field("session_expiry_interval_s", &self.session_expiry_interval_s)
            .field("receive_maximum", &self.receive_maximum)
            .field("maximum_packet_size", &self.maximum_packet_size)
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field(
                "request_response_information",
                &self.request_response_information,
            )
            .field(
                "request_problem_information",
                &self.request_problem_information,
            )
            .field("user_properties", &self.user_properties)
            .field("authentication_method", &self.authentication_method)
            .field("authentication_data", &redact(&self.authentication_data))
            .finish()
    }
}

/// Shows the topic and the payload's length, never the payload: it is customer data.
impl fmt::Debug for Will {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Will")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("delay_interval_s", &self.delay_interval_s)
            .field("properties", &self.properties)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, Packet};

    fn decode(bytes: &'static [u8]) -> Result<Connect, DecodeError> {
        // CONNECT ignores the negotiated version; V3_1 here proves it.
        match Packet::decode(Bytes::from_static(bytes), ProtocolVersion::V3_1)? {
            Packet::Connect(c) => Ok(*c),
            other => panic!("decoded {other:?}"),
        }
    }

    fn minimal(protocol: ProtocolVersion) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive_s: 60,
            client_id: "c1".into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    /// Proves the 3.1.1 layout field by field: will, user name and password in that order.
    #[test]
    #[rustfmt::skip]
    fn decode_v3_1_1() {
        let c = decode(&[
            0b0001_0000, 30,                    // CONNECT, remaining length 30
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x04,                               // level 4 (3.1.1)
            0b1110_1110,                        // user, password, will retain+QoS 1, will, clean
            0x00, 0x3C,                         // keep alive 60 s
            0x00, 0x02, b'c', b'1',             // client id "c1"
            0x00, 0x03, b'w', b'/', b't',       // will topic "w/t"
            0x00, 0x02, b'b', b'y',             // will payload "by"
            0x00, 0x01, b'u',                   // user name "u"
            0x00, 0x02, 0xFF, 0x00,             // password: binary, not UTF-8
        ])
        .unwrap();
        assert_eq!(c.protocol, ProtocolVersion::V3_1_1);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive_s, 60);
        assert_eq!(&c.client_id[..], "c1");
        let will = c.will.as_ref().unwrap();
        assert_eq!((&will.topic[..], &will.payload[..]), ("w/t", &b"by"[..]));
        assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some(&[0xFF, 0x00][..]));
        assert_eq!(c.properties, ConnectProperties::default());
        assert_round_trip(&Packet::Connect(Box::new(c)), ProtocolVersion::V3_1_1);
    }

    /// Proves MQTT 3.1's "MQIsdp" level 3 is recognised and written back the same way.
    #[test]
    #[rustfmt::skip]
    fn decode_v3_1() {
        let c = decode(&[
            0b0001_0000, 16,                                // CONNECT, remaining length 16
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
            0x03,                                           // level 3 (3.1)
            0b0000_0010,                                    // clean session
            0x00, 0x0A,                                     // keep alive 10 s
            0x00, 0x02, b'c', b'1',                         // client id "c1"
        ])
        .unwrap();
        assert_eq!(c.protocol, ProtocolVersion::V3_1);
        let bytes = assert_round_trip(&Packet::Connect(Box::new(c)), ProtocolVersion::V3_1);
        assert_eq!(&bytes[2..10], b"\x00\x06MQIsdp");
    }

    /// Proves the v5 layout: properties after keep alive, will properties before the will topic.
    #[test]
    #[rustfmt::skip]
    fn decode_v5() {
        let c = decode(&[
            0b0001_0000, 32,                    // CONNECT, remaining length 32
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05,                               // level 5
            0b0000_0110,                        // will (QoS 0, no retain), clean start
            0x00, 0x00,                         // keep alive 0: off
            0x08,                               // property length 8
            0x11, 0x00, 0x00, 0x0E, 0x10,       //   session expiry interval 3600 s
            0x21, 0x00, 0x0A,                   //   receive maximum 10
            0x00, 0x00,                         // client id "" (the server assigns one)
            0x05,                               // will property length 5
            0x18, 0x00, 0x00, 0x00, 0x1E,       //   will delay interval 30 s
            0x00, 0x01, b't',                   // will topic "t"
            0x00, 0x00,                         // will payload: empty
        ])
        .unwrap();
        assert_eq!(c.protocol, ProtocolVersion::V5);
        assert_eq!(c.properties.session_expiry_interval_s, Some(3600));
        assert_eq!(c.properties.receive_maximum, NonZeroU16::new(10));
        assert_eq!(&c.client_id[..], "");
        let will = c.will.as_ref().unwrap();
        assert_eq!(will.delay_interval_s, Some(30));
        assert_eq!(&will.topic[..], "t");
        assert!(will.payload.is_empty());
        assert_round_trip(&Packet::Connect(Box::new(c)), ProtocolVersion::V5);
    }

    /// Proves every CONNECT property and every will property survives a round trip.
    #[test]
    fn round_trip_every_property() {
        let c = Connect {
            clean_start: false,
            keep_alive_s: 65_535,
            will: Some(Will {
                topic: "last/will".into(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::ExactlyOnce,
                retain: true,
                delay_interval_s: Some(5),
                properties: MessageProperties {
                    payload_format_indicator: Some(1),
                    message_expiry_interval_s: Some(600),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("reply/here".into()),
                    correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
                    user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                },
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pw")),
            properties: ConnectProperties {
                session_expiry_interval_s: Some(u32::MAX),
                receive_maximum: NonZeroU16::new(100),
                maximum_packet_size: NonZeroU32::new(1 << 20),
                topic_alias_maximum: Some(0),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: vec![("k".into(), "v".into())],
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(Bytes::from_static(b"client-first")),
            },
            ..minimal(ProtocolVersion::V5)
        };
        assert_round_trip(&Packet::Connect(Box::new(c)), ProtocolVersion::V5);
    }

    /// Proves a v3 CONNECT drops v5-only data on encode instead of writing it.
    #[test]
    fn v3_drops_properties() {
        let mut c = minimal(ProtocolVersion::V3_1_1);
        c.properties.session_expiry_interval_s = Some(10);
        c.will = Some(Will {
            topic: "t".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            delay_interval_s: Some(3),
            properties: MessageProperties::default(),
        });
        let mut out = BytesMut::new();
        c.encode(ProtocolVersion::V5, &mut out);
        assert_eq!(out.len(), c.encoded_len(ProtocolVersion::V5));
        let back = decode_owned(out.freeze());
        assert_eq!(back.properties, ConnectProperties::default());
        assert_eq!(back.will.unwrap().delay_interval_s, None);
    }

    fn decode_owned(bytes: Bytes) -> Connect {
        match Packet::decode(bytes, ProtocolVersion::V5).unwrap() {
            Packet::Connect(c) => *c,
            other => panic!("decoded {other:?}"),
        }
    }

    /// Proves [MQTT-3.1.2-1]: any protocol name but "MQTT" and "MQIsdp" is refused.
    #[test]
    #[rustfmt::skip]
    fn invalid_protocol_name() {
        assert_eq!(
            decode(&[
                0b0001_0000, 10,                    // CONNECT, remaining length 10
                0x00, 0x04, b'M', b'Q', b'T', b'X', // protocol name "MQTX"
                0x04, 0x00, 0x00, 0x00,             // level, flags, keep alive
            ]),
            Err(DecodeError::InvalidProtocolName)
        );
    }

    /// Proves [MQTT-3.1.2-2]: a known name with an unknown level reports the level.
    #[test]
    #[rustfmt::skip]
    fn unsupported_levels() {
        assert_eq!(
            decode(&[
                0b0001_0000, 10,                    // CONNECT, remaining length 10
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x06, 0x00, 0x00, 0x00,             // level 6, flags, keep alive
            ]),
            Err(DecodeError::UnsupportedProtocolVersion { level: 6 })
        );
        assert_eq!(
            decode(&[
                0b0001_0000, 10,                    // CONNECT, remaining length 10
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x03, 0x00, 0x00, 0x00,             // level 3 belongs to "MQIsdp"
            ]),
            Err(DecodeError::UnsupportedProtocolVersion { level: 3 })
        );
        assert_eq!(
            decode(&[
                0b0001_0000, 12,                                // CONNECT, remaining length 12
                0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
                0x04, 0x00, 0x00, 0x00,                         // level 4 belongs to "MQTT"
            ]),
            Err(DecodeError::UnsupportedProtocolVersion { level: 4 })
        );
    }

    /// Proves [MQTT-2.1.3-1] on the CONNECT fixed header and [MQTT-3.1.2-3] on its flags byte.
    #[test]
    #[rustfmt::skip]
    fn reserved_flags() {
        assert_eq!(
            decode(&[
                0b0001_0001, 12,                    // CONNECT with flag bit 0 set
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04, 0b0000_0010,                  // level 4, clean session
                0x00, 0x00, 0x00, 0x00,             // keep alive, client id ""
            ]),
            Err(DecodeError::ReservedFlags)
        );
        assert_eq!(
            decode(&[
                0b0001_0000, 12,                    // CONNECT, remaining length 12
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04,                               // level 4
                0b0000_0011,                        // clean session + the reserved bit
                0x00, 0x00, 0x00, 0x00,             // keep alive, client id ""
            ]),
            Err(DecodeError::ConnectReservedFlag)
        );
    }

    /// Proves [MQTT-3.1.2-11] and [MQTT-3.1.2-13]: will QoS and will retain need the will flag.
    #[test]
    #[rustfmt::skip]
    fn will_flags_without_will() {
        for flags in [0b0000_1000u8, 0b0010_0000] {
            let bytes = vec![
                0b0001_0000, 12,                    // CONNECT, remaining length 12
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04,                               // level 4
                flags,                              // will QoS 1 or will retain, no will flag
                0x00, 0x00, 0x00, 0x00,             // keep alive, client id ""
            ];
            assert_eq!(
                Packet::decode(Bytes::from(bytes), ProtocolVersion::V3_1_1),
                Err(DecodeError::WillFlagsWithoutWill)
            );
        }
    }

    /// Proves [MQTT-3.1.2-12]: a will QoS of 3 is malformed.
    #[test]
    #[rustfmt::skip]
    fn will_qos_3() {
        assert_eq!(
            decode(&[
                0b0001_0000, 17,                    // CONNECT, remaining length 17
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04,                               // level 4
                0b0001_1100,                        // will flag, will QoS 3
                0x00, 0x00, 0x00, 0x00,             // keep alive, client id ""
                0x00, 0x01, b't', 0x00, 0x00,       // will topic "t", empty payload
            ]),
            Err(DecodeError::WillQoS3)
        );
    }

    /// Proves [MQTT-3.1.2-22] of 3.1.1 (password needs a user name), and that v5 drops the rule.
    #[test]
    #[rustfmt::skip]
    fn password_without_username() {
        assert_eq!(
            decode(&[
                0b0001_0000, 15,                    // CONNECT, remaining length 15
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04,                               // level 4
                0b0100_0000,                        // password flag only
                0x00, 0x00, 0x00, 0x00,             // keep alive, client id ""
                0x00, 0x01, b'p',                   // password "p"
            ]),
            Err(DecodeError::PasswordWithoutUsername)
        );
        let c = decode(&[
            0b0001_0000, 16,                    // CONNECT, remaining length 16
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
            0x05,                               // level 5
            0b0100_0000,                        // password flag only
            0x00, 0x00,                         // keep alive
            0x00,                               // property length 0
            0x00, 0x00,                         // client id ""
            0x00, 0x01, b'p',                   // password "p"
        ])
        .unwrap();
        assert_eq!((c.username, c.password.as_deref()), (None, Some(&b"p"[..])));
    }

    /// Proves the will topic is a topic name: no wildcard ([MQTT-4.7.0-1]), not empty
    /// ([MQTT-4.7.3-1]).
    #[test]
    #[rustfmt::skip]
    fn will_topic_is_a_topic_name() {
        assert_eq!(
            decode(&[
                0b0001_0000, 18,                    // CONNECT, remaining length 18
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04, 0b0000_0100, 0x00, 0x00,      // level 4, will flag, keep alive
                0x00, 0x00,                         // client id ""
                0x00, 0x02, b'a', b'#',             // will topic "a#"
                0x00, 0x00,                         // will payload
            ]),
            Err(DecodeError::WillTopicWildcard)
        );
        assert_eq!(
            decode(&[
                0b0001_0000, 16,                    // CONNECT, remaining length 16
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04, 0b0000_0100, 0x00, 0x00,      // level 4, will flag, keep alive
                0x00, 0x00,                         // client id ""
                0x00, 0x00,                         // will topic ""
                0x00, 0x00,                         // will payload
            ]),
            Err(DecodeError::EmptyTopicName)
        );
    }

    /// Proves the v5 property rules of CONNECT: once only, non-zero limits, 0/1 booleans, only
    /// CONNECT's identifiers, and no authentication data without a method.
    #[test]
    #[rustfmt::skip]
    fn v5_property_violations() {
        fn connect_with(properties: &[u8]) -> Result<Connect, DecodeError> {
            let mut bytes = vec![
                0b0001_0000, 0,                     // CONNECT, remaining length patched below
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x05, 0b0000_0010, 0x00, 0x00,      // level 5, clean start, keep alive
                properties.len() as u8,             // property length
            ];
            bytes.extend_from_slice(properties);
            bytes.extend_from_slice(&[0x00, 0x00]); // client id ""
            bytes[1] = (bytes.len() - 2) as u8;
            match Packet::decode(Bytes::from(bytes), ProtocolVersion::V5)? {
                Packet::Connect(c) => Ok(*c),
                other => panic!("decoded {other:?}"),
            }
        }
        assert_eq!(
            connect_with(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]), // session expiry twice
            Err(DecodeError::DuplicateProperty { id: 0x11 })
        );
        assert_eq!(
            connect_with(&[0x21, 0x00, 0x00]), // receive maximum 0
            Err(DecodeError::InvalidPropertyValue { id: 0x21 })
        );
        assert_eq!(
            connect_with(&[0x27, 0, 0, 0, 0]), // maximum packet size 0
            Err(DecodeError::InvalidPropertyValue { id: 0x27 })
        );
        assert_eq!(
            connect_with(&[0x17, 0x02]), // request problem information 2
            Err(DecodeError::InvalidPropertyValue { id: 0x17 })
        );
        assert_eq!(
            connect_with(&[0x23, 0x00, 0x01]), // topic alias: a PUBLISH property
            Err(DecodeError::PropertyNotAllowed { id: 0x23 })
        );
        assert_eq!(
            connect_with(&[0x16, 0x00, 0x01, 0xAA]), // authentication data, no method
            Err(DecodeError::AuthenticationDataWithoutMethod)
        );
        assert_eq!(
            connect_with(&[0x18, 0, 0, 0, 1]), // will delay interval outside the will
            Err(DecodeError::PropertyNotAllowed { id: 0x18 })
        );
    }

    /// Proves will properties accept only will properties, and a wildcard response topic is
    /// refused ([MQTT-3.3.2-14]).
    #[test]
    #[rustfmt::skip]
    fn v5_will_property_violations() {
        fn will_with(properties: &[u8]) -> Result<Connect, DecodeError> {
            let mut bytes = vec![
                0b0001_0000, 0,                     // CONNECT, remaining length patched below
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x05, 0b0000_0100, 0x00, 0x00,      // level 5, will flag, keep alive
                0x00,                               // property length 0
                0x00, 0x00,                         // client id ""
                properties.len() as u8,             // will property length
            ];
            bytes.extend_from_slice(properties);
            bytes.extend_from_slice(&[0x00, 0x01, b't', 0x00, 0x00]); // will topic "t", payload
            bytes[1] = (bytes.len() - 2) as u8;
            match Packet::decode(Bytes::from(bytes), ProtocolVersion::V5)? {
                Packet::Connect(c) => Ok(*c),
                other => panic!("decoded {other:?}"),
            }
        }
        assert!(will_with(&[0x01, 0x01]).is_ok()); // payload format indicator 1
        assert_eq!(
            will_with(&[0x11, 0, 0, 0, 1]), // session expiry: a CONNECT property
            Err(DecodeError::PropertyNotAllowed { id: 0x11 })
        );
        assert_eq!(
            will_with(&[0x01, 0x02]), // payload format indicator 2
            Err(DecodeError::InvalidPropertyValue { id: 0x01 })
        );
        assert_eq!(
            will_with(&[0x08, 0x00, 0x03, b'r', b'/', b'+']), // response topic "r/+"
            Err(DecodeError::ResponseTopicWildcard)
        );
        assert_eq!(
            will_with(&[0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1]), // will delay twice
            Err(DecodeError::DuplicateProperty { id: 0x18 })
        );
    }

    /// Proves fields the flags promise must be there, and nothing may follow them.
    #[test]
    #[rustfmt::skip]
    fn truncated_and_trailing() {
        assert_eq!(
            decode(&[
                0b0001_0000, 12,                    // CONNECT, remaining length 12
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04, 0b1000_0000, 0x00, 0x00,      // level 4, user name flag, keep alive
                0x00, 0x00,                         // client id "", then no user name
            ]),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            decode(&[
                0b0001_0000, 13,                    // CONNECT, remaining length 13
                0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
                0x04, 0x00, 0x00, 0x00,             // level 4, no flags, keep alive
                0x00, 0x00,                         // client id ""
                0xAB,                               // a stray byte
            ]),
            Err(DecodeError::TrailingBytes)
        );
    }

    /// Proves Debug shows neither the password, the authentication data nor the will payload.
    #[test]
    fn debug_hides_secrets() {
        let mut c = minimal(ProtocolVersion::V5);
        c.password = Some(Bytes::from_static(b"hunter2"));
        c.properties.authentication_method = Some("PLAIN".into());
        c.properties.authentication_data = Some(Bytes::from_static(b"s3cr3t"));
        c.will = Some(Will {
            topic: "t".into(),
            payload: Bytes::from_static(b"private"),
            qos: QoS::AtMostOnce,
            retain: false,
            delay_interval_s: None,
            properties: MessageProperties::default(),
        });
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("104, 117"),
            "{shown}"
        );
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("private"),
            "{shown}"
        );
        assert!(shown.contains("password: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("payload_len: 7"), "{shown}");
    }
}
