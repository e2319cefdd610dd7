//! PUBLISH (§3.3): an application message. This is the hot path: decoding slices the topic and
//! the payload out of the frame without copying, and encoding is one reservation and a few
//! `put_slice` calls.
//!
//! Layout: fixed header flags DUP, QoS, RETAIN; topic name, [QoS > 0: packet id],
//! [v5: properties], payload (the rest of the packet, possibly empty).

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{packet_len, packet_type};
use crate::properties::{
    block_len, opt_len, property_id as id, put_block_len, put_opt, unexpected, MessageProperties,
    PropertyReader,
};
use crate::strings::{prefixed_len, put_string, Reader};
use crate::types::{PacketId, ProtocolVersion, QoS};
use crate::varint;

const FLAG_DUP: u8 = 0b1000;
const FLAG_QOS_SHIFT: u8 = 1;
const FLAG_QOS: u8 = 0b0110;
const FLAG_RETAIN: u8 = 0b0001;

/// A PUBLISH packet.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// Written only for QoS > 0 ([MQTT-3.3.1-2]).
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in v5 with a topic alias.
    pub topic: ByteString,
    /// `Some` iff `qos > 0`. Encoding a QoS 1 or 2 PUBLISH without one is a bug and panics.
    pub packet_id: Option<PacketId>,
    /// v5 only.
    pub properties: PublishProperties,
    pub payload: Bytes,
}

/// PUBLISH properties (§3.3.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishProperties {
    pub message: MessageProperties,
    pub topic_alias: Option<NonZeroU16>,
    /// 1..=268,435,455 each; several when overlapping subscriptions matched ([MQTT-3.3.4-3]).
    pub subscription_identifiers: Vec<NonZeroU32>,
}

impl Publish {
    pub fn decode(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let dup = flags & FLAG_DUP != 0;
        let qos = QoS::try_from((flags & FLAG_QOS) >> FLAG_QOS_SHIFT)?;
        let retain = flags & FLAG_RETAIN != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::PublishDupWithQoS0);
        }
        let mut r = Reader::new(&body);
        let topic = r.topic_name(DecodeError::PublishTopicWildcard)?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let properties = if version.is_v5() {
            PublishProperties::decode(&mut r)?
        } else {
            PublishProperties::default()
        };
        if topic.is_empty() {
            if !version.is_v5() {
                return Err(DecodeError::EmptyTopicName);
            }
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
        }
        // The payload is the rest of the body: move the start of `body` past the header instead
        // of slicing a new `Bytes` (no reference-count traffic).
        let header_len = r.position();
        body.advance(header_len);
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: body,
        })
    }

    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.reserve(self.encoded_len(version));
        self.encode_header(version, out);
        out.put_slice(&self.payload);
    }

    /// Writes the whole packet but the payload, whose length the remaining length still counts:
    /// for a broker that sends a large payload from the message's own buffer instead of copying
    /// it once per subscriber.
    pub fn encode_header(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let properties_len = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        let remaining = self.remaining_len(version, properties_len);
        out.reserve(packet_len(remaining) - self.payload.len());
        out.put_u8(self.first_byte());
        varint::write(out, remaining);
        put_string(out, &self.topic);
        if self.qos != QoS::AtMostOnce {
            let packet_id = self
                .packet_id
                .expect("PUBLISH with QoS > 0 has no packet id");
            out.put_u16(packet_id.get());
        }
        if version.is_v5() {
            put_block_len(out, properties_len);
            self.properties.encode(out);
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
        let packet_id = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        let properties = if version.is_v5() {
            block_len(properties_len)
        } else {
            0
        };
        prefixed_len(self.topic.as_bytes()) + packet_id + properties + self.payload.len()
    }

    fn first_byte(&self) -> u8 {
        let mut byte = (packet_type::PUBLISH << 4) | ((self.qos as u8) << FLAG_QOS_SHIFT);
        if self.dup && self.qos != QoS::AtMostOnce {
            byte |= FLAG_DUP;
        }
        if self.retain {
            byte |= FLAG_RETAIN;
        }
        byte
    }
}

impl PublishProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = PublishProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::TOPIC_ALIAS => pr.topic_alias(&mut p.topic_alias, identifier)?,
                id::SUBSCRIPTION_IDENTIFIER => p
                    .subscription_identifiers
                    .push(pr.subscription_identifier()?),
                _ => {
                    if !p.message.read(&mut pr, identifier)? {
                        return Err(unexpected(identifier));
                    }
                }
            }
        }
        Ok(p)
    }

    fn encoded_len(&self) -> usize {
        let subscription_identifiers: usize = self
            .subscription_identifiers
            .iter()
            .map(|s| 1 + varint::encoded_len(s.get() as usize))
            .sum();
        self.message.encoded_len() + opt_len(&self.topic_alias) + subscription_identifiers
    }

    fn encode(&self, out: &mut BytesMut) {
        self.message.encode(out);
        put_opt(out, id::TOPIC_ALIAS, &self.topic_alias);
        for subscription_identifier in &self.subscription_identifiers {
            out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
            varint::write(out, subscription_identifier.get() as usize);
        }
    }
}

/// Shows the topic and the payload's length, never the payload: it is customer data.
impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("packet_id", &self.packet_id)
            .field("properties", &self.properties)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    test_decoder!(Publish -> Publish);

    fn qos0(topic: &'static str, payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from_static(topic),
            packet_id: None,
            properties: PublishProperties::default(),
            payload: Bytes::from_static(payload),
        }
    }

    /// Proves the QoS 0 layout: no packet id, payload to the end; the same bytes in 3.1 and 3.1.1.
    #[test]
    #[rustfmt::skip]
    fn qos0_v3() {
        let bytes = [
            0b0011_0001, 7,               // PUBLISH, QoS 0, retain; remaining length 7
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            b'h', b'i',                   // payload "hi"
        ];
        let expected = Publish {
            retain: true,
            ..qos0("a/b", b"hi")
        };
        for version in [ProtocolVersion::V3_1, V3] {
            assert_eq!(decode(&bytes, version), Ok(expected.clone()));
            let out = assert_round_trip(&Packet::Publish(expected.clone()), version);
            assert_eq!(&out[..], &bytes);
        }
    }

    /// Proves the QoS 1 layout with DUP: the packet id follows the topic.
    #[test]
    #[rustfmt::skip]
    fn qos1_v3() {
        let bytes = [
            0b0011_1010, 7,   // PUBLISH, DUP, QoS 1; remaining length 7
            0x00, 0x01, b't', // topic "t"
            0x01, 0x04,       // packet id 260
            0xFF, 0x00,       // payload: arbitrary bytes
        ];
        let p = decode(&bytes, V3).unwrap();
        assert_eq!(
            (p.dup, p.qos, p.packet_id),
            (true, QoS::AtLeastOnce, PacketId::new(260))
        );
        assert_eq!(&p.payload[..], &[0xFF, 0x00]);
        let out = assert_round_trip(&Packet::Publish(p), V3);
        assert_eq!(&out[..], &bytes);
    }

    /// Proves the v5 layout: the property block sits between the packet id and the payload.
    #[test]
    #[rustfmt::skip]
    fn qos2_v5() {
        let bytes = [
            0b0011_0100, 12,  // PUBLISH, QoS 2; remaining length 12
            0x00, 0x01, b't', // topic "t"
            0x00, 0x07,       // packet id 7
            0x06,             // property length 6
            0x23, 0x00, 0x02, //   topic alias 2
            0x0B, 0x81, 0x01, //   subscription identifier 129 (two-byte varint)
                  // empty payload
        ];
        let p = decode(&bytes, V5).unwrap();
        assert_eq!(p.properties.topic_alias, NonZeroU16::new(2));
        assert_eq!(
            p.properties.subscription_identifiers,
            [NonZeroU32::new(129).unwrap()]
        );
        assert!(p.payload.is_empty());
        let out = assert_round_trip(&Packet::Publish(p), V5);
        assert_eq!(&out[..], &bytes);
    }

    /// Proves topic and payload are slices of the frame: decoding copies no message bytes.
    #[test]
    #[rustfmt::skip]
    fn decode_is_zero_copy() {
        let frame = Bytes::from(vec![
            0b0011_0000, 8,               // PUBLISH, QoS 0; remaining length 8
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            b'x', b'y', b'z',             // payload "xyz"
        ]);
        let Packet::Publish(p) = Packet::decode(frame.clone(), V3).unwrap() else {
            panic!()
        };
        assert_eq!(p.topic.as_bytes().as_ptr(), frame[4..].as_ptr());
        assert_eq!(p.payload.as_ptr(), frame[7..].as_ptr());
    }

    /// Proves every PUBLISH property survives a round trip, including repeated subscription
    /// identifiers up to the largest, and that 3.1.1 drops them all.
    #[test]
    fn round_trip_every_property() {
        let p = Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            packet_id: PacketId::new(u16::MAX),
            properties: PublishProperties {
                message: MessageProperties {
                    payload_format_indicator: Some(0),
                    message_expiry_interval_s: Some(0),
                    content_type: Some("application/json".into()),
                    response_topic: Some("reply/1".into()),
                    correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                    user_properties: vec![("b".into(), "".into()), ("a".into(), "x".into())],
                },
                topic_alias: NonZeroU16::new(u16::MAX),
                subscription_identifiers: vec![
                    NonZeroU32::new(1).unwrap(),
                    NonZeroU32::new(268_435_455).unwrap(),
                ],
            },
            ..qos0("s/t", b"{}")
        };
        assert_round_trip(&Packet::Publish(p.clone()), V5);
        let out = assert_round_trip(
            &Packet::Publish(Publish {
                properties: Default::default(),
                ..p.clone()
            }),
            V3,
        );
        let mut v3 = BytesMut::new();
        p.encode(V3, &mut v3);
        assert_eq!(v3, out);
    }

    /// Proves [MQTT-3.3.1-4]: QoS 3 is malformed.
    #[test]
    fn qos_3() {
        assert_eq!(
            decode(&[0b0011_0110, 3, 0x00, 0x01, b't'], V3), // PUBLISH, QoS bits 11
            Err(DecodeError::InvalidQoS)
        );
    }

    /// Proves [MQTT-3.3.1-2]: DUP on QoS 0 is refused, and the encoder never writes it.
    #[test]
    fn dup_with_qos0() {
        assert_eq!(
            decode(&[0b0011_1000, 3, 0x00, 0x01, b't'], V3), // PUBLISH, DUP, QoS 0
            Err(DecodeError::PublishDupWithQoS0)
        );
        let mut out = BytesMut::new();
        Publish {
            dup: true,
            ..qos0("t", b"")
        }
        .encode(V3, &mut out);
        assert_eq!(out[0], 0b0011_0000);
    }

    /// Proves [MQTT-3.3.2-2]: both wildcards are refused in a topic name.
    #[test]
    fn topic_wildcards() {
        for wildcard in [b'+', b'#'] {
            assert_eq!(
                decode(&[0b0011_0000, 5, 0x00, 0x03, b'a', b'/', wildcard], V5),
                Err(DecodeError::PublishTopicWildcard)
            );
        }
    }

    /// Proves an empty topic needs a topic alias in v5, and is never allowed in 3.x
    /// ([MQTT-4.7.3-1]).
    #[test]
    #[rustfmt::skip]
    fn empty_topic() {
        assert_eq!(
            decode(&[0b0011_0000, 3, 0x00, 0x00, 0x00], V5), // topic "", property length 0
            Err(DecodeError::EmptyTopicWithoutAlias)
        );
        let p = decode(
            &[
                0b0011_0000, 6,   // PUBLISH, QoS 0; remaining length 6
                0x00, 0x00,       // topic ""
                0x03,             // property length 3
                0x23, 0x00, 0x05, //   topic alias 5
            ],
            V5,
        )
        .unwrap();
        assert_eq!(
            (&p.topic[..], p.properties.topic_alias),
            ("", NonZeroU16::new(5))
        );
        assert_eq!(
            decode(&[0b0011_0000, 2, 0x00, 0x00], V3), // topic ""
            Err(DecodeError::EmptyTopicName)
        );
    }

    /// Proves [MQTT-3.3.2-8] (alias 0) and [MQTT-2.2.1-3] (packet id 0).
    #[test]
    fn zero_alias_and_zero_packet_id() {
        assert_eq!(
            decode(
                &[0b0011_0000, 7, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00],
                V5
            ),
            Err(DecodeError::TopicAliasZero)
        );
        assert_eq!(
            decode(&[0b0011_0010, 5, 0x00, 0x01, b't', 0x00, 0x00], V3), // QoS 1, packet id 0
            Err(DecodeError::PacketIdZero)
        );
    }

    /// Proves the property rules of PUBLISH: subscription identifier 0, a duplicate alias, a
    /// wildcard response topic, a payload format above 1, and a CONNECT-only property.
    #[test]
    fn v5_property_violations() {
        for (properties, error) in [
            (
                &[0x0B, 0x00][..],
                DecodeError::InvalidPropertyValue { id: 0x0B },
            ),
            (
                &[0x23, 0, 1, 0x23, 0, 2][..],
                DecodeError::DuplicateProperty { id: 0x23 },
            ),
            (
                &[0x08, 0x00, 0x01, b'#'][..],
                DecodeError::ResponseTopicWildcard,
            ),
            (
                &[0x01, 0x02][..],
                DecodeError::InvalidPropertyValue { id: 0x01 },
            ),
            (
                &[0x11, 0, 0, 0, 0][..],
                DecodeError::PropertyNotAllowed { id: 0x11 },
            ),
            (
                &[0x0B, 0xFF, 0xFF, 0xFF, 0xFF][..],
                DecodeError::MalformedVariableByteInteger,
            ),
        ] {
            let mut bytes = vec![0b0011_0000, 0, 0x00, 0x01, b't', properties.len() as u8];
            bytes.extend_from_slice(properties);
            bytes[1] = (bytes.len() - 2) as u8;
            assert_eq!(decode(&bytes, V5), Err(error), "{properties:x?}");
        }
    }

    /// Proves a topic length running past the packet is UnexpectedEnd.
    #[test]
    fn truncated() {
        assert_eq!(
            decode(&[0b0011_0000, 3, 0x00, 0x05, b't'], V3), // topic length 5, 1 byte present
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            decode(&[0b0011_0010, 4, 0x00, 0x01, b't', 0x01], V3), // half a packet id
            Err(DecodeError::UnexpectedEnd)
        );
    }

    /// Proves the header written without the payload is exactly the packet's prefix.
    #[test]
    fn encode_header_is_the_packet_without_its_payload() {
        let mut p = qos0("a/b", b"payload bytes");
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(7);
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut whole = BytesMut::new();
            p.encode(version, &mut whole);
            let mut header = BytesMut::new();
            p.encode_header(version, &mut header);
            assert_eq!(header.len() + p.payload.len(), whole.len());
            assert_eq!(&whole[..header.len()], &header[..]);
        }
    }

    /// Proves Debug shows the topic and payload length, never the payload bytes.
    #[test]
    fn debug_hides_the_payload() {
        let shown = format!("{:?}", qos0("sensors/1", b"card=4111111111111111"));
        assert!(shown.contains("\"sensors/1\""), "{shown}");
        assert!(shown.contains("payload_len: 21"), "{shown}");
        assert!(!shown.contains("4111"), "{shown}");
    }

    /// Proves encoding a QoS 1 PUBLISH without a packet id is refused loudly: it is a bug.
    #[test]
    #[should_panic(expected = "no packet id")]
    fn qos1_without_packet_id_panics() {
        Publish {
            qos: QoS::AtLeastOnce,
            ..qos0("t", b"")
        }
        .encode(V3, &mut BytesMut::new());
    }
}
