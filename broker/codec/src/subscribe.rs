//! SUBSCRIBE (§3.8).
//!
//! Layout: fixed header flags 0010; packet id, [v5: properties], then one or more pairs of topic
//! filter and options byte. In 3.x the options byte holds only the requested QoS.
//!
//! The codec checks what the bytes alone decide: UTF-8, non-empty filters, reserved bits, QoS and
//! retain handling values. Where wildcards may stand (`a/#/b`) and the shared-subscription
//! syntax (`$share/g/...`) are the core's business: such filters decode fine here.

use std::num::NonZeroU32;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{
    block_len, property_id as id, put_block_len, put_user_properties, unexpected,
    user_properties_len, PropertyReader,
};
use crate::strings::{prefixed_len, put_string, Reader};
use crate::types::{PacketId, ProtocolVersion, QoS, UserProperties};
use crate::varint;

const FLAGS: u8 = 0b0010;

const OPTION_QOS: u8 = 0b0000_0011;
const OPTION_NO_LOCAL: u8 = 0b0000_0100;
const OPTION_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const OPTION_RETAIN_HANDLING_SHIFT: u8 = 4;
const OPTION_RETAIN_HANDLING: u8 = 0b0011_0000;
/// Bits 6 and 7 in v5 ([MQTT-3.8.3-5]); bits 2 to 7 in 3.x (3.1.1 [MQTT-3.8.3-4]).
const OPTION_RESERVED_V5: u8 = 0b1100_0000;
const OPTION_RESERVED_V3: u8 = 0b1111_1100;

/// A SUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// At least one ([MQTT-3.8.3-2]).
    pub filters: Vec<SubscribeFilter>,
    /// v5 only.
    pub properties: SubscribeProperties,
}

/// SUBSCRIBE properties (§3.8.2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<NonZeroU32>,
    pub user_properties: UserProperties,
}

/// One topic filter and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// Not empty ([MQTT-4.7.3-1]); otherwise as the client sent it.
    pub filter: ByteString,
    pub options: SubscriptionOptions,
}

/// The Subscription Options byte (§3.8.3.1). 3.x carries only `qos`; the rest is written as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// The maximum QoS the client asks for.
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// When retained messages are sent for a new subscription (§3.8.3.1).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    #[default]
    SendAtSubscribe = 0,
    SendIfNewSubscription = 1,
    DoNotSend = 2,
}

impl SubscriptionOptions {
    /// Options as a 3.x client can express them: a QoS and defaults for the rest.
    pub fn with_qos(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }

    /// The options as the v5 byte holds them, for a store that keeps them.
    pub fn to_byte(self) -> u8 {
        self.encode(ProtocolVersion::V5)
    }

    /// Options from [`SubscriptionOptions::to_byte`]'s byte.
    pub fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        Self::decode(byte, ProtocolVersion::V5)
    }

    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() {
            OPTION_RESERVED_V5
        } else {
            OPTION_RESERVED_V3
        };
        if byte & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved);
        }
        let qos =
            QoS::try_from(byte & OPTION_QOS).map_err(|_| DecodeError::SubscriptionQoSInvalid)?;
        let retain_handling = match (byte & OPTION_RETAIN_HANDLING) >> OPTION_RETAIN_HANDLING_SHIFT
        {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNewSubscription,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::RetainHandlingInvalid),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & OPTION_NO_LOCAL != 0,
            retain_as_published: byte & OPTION_RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    fn encode(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            if self.no_local {
                byte |= OPTION_NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= OPTION_RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << OPTION_RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

impl Subscribe {
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let frame = SubscribeFrame::decode(flags, body, version)?;
        let mut reading = frame.filters();
        let mut filters = Vec::new();
        while let Some(filter) = reading.next_filter()? {
            filters.push(filter);
        }
        Ok(Subscribe {
            packet_id: frame.packet_id,
            filters,
            properties: frame.properties,
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
            (packet_type::SUBSCRIBE << 4) | FLAGS,
            self.remaining_len(version, properties_len),
        );
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_block_len(out, properties_len);
            self.properties.encode(out);
        }
        for f in &self.filters {
            put_string(out, &f.filter);
            out.put_u8(f.options.encode(version));
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
        let filters: usize = self
            .filters
            .iter()
            .map(|f| prefixed_len(f.filter.as_bytes()) + 1)
            .sum();
        2 + properties + filters
    }
}

/// A SUBSCRIBE whose filters stay in the frame, to be read and checked one at a time by whoever
/// takes it in: a broker takes SUBSCRIBEs in this form, so that one holding half a million
/// filters is neither decoded nor even scanned in one go, and costs no allocation per filter.
#[derive(Clone, Debug)]
pub struct SubscribeFrame {
    pub packet_id: PacketId,
    /// v5 only.
    pub properties: SubscribeProperties,
    /// The body from the first filter on.
    filters: Bytes,
    version: ProtocolVersion,
}

impl SubscribeFrame {
    /// Decodes the packet id and properties; the filters are read by [`SubscribeFrame::filters`].
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != FLAGS {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            SubscribeProperties::decode(&mut r)?
        } else {
            SubscribeProperties::default()
        };
        Ok(SubscribeFrame {
            packet_id,
            properties,
            filters: body.slice(r.position()..),
            version,
        })
    }

    /// Its filters, in order, read from the frame.
    pub fn filters(&self) -> SubscribeFilters {
        SubscribeFilters {
            rest: self.filters.clone(),
            version: self.version,
            read: 0,
        }
    }
}

/// The filters of a [`SubscribeFrame`], read one at a time (each shares the frame's bytes). A
/// frame without any is malformed ([MQTT-3.8.3-2]): its first read says so.
#[derive(Clone, Debug)]
pub struct SubscribeFilters {
    rest: Bytes,
    version: ProtocolVersion,
    read: usize,
}

impl SubscribeFilters {
    /// The next filter, checked (UTF-8, not empty, valid options); `None` after the last one.
    pub fn next_filter(&mut self) -> Result<Option<SubscribeFilter>, DecodeError> {
        if self.rest.is_empty() {
            return match self.read {
                0 => Err(DecodeError::SubscribeNoFilters),
                _ => Ok(None),
            };
        }
        let mut r = Reader::new(&self.rest);
        let filter = r.string()?;
        if filter.is_empty() {
            return Err(DecodeError::EmptyTopicFilter);
        }
        let options = SubscriptionOptions::decode(r.u8()?, self.version)?;
        let used = r.position();
        self.rest.advance(used);
        self.read += 1;
        Ok(Some(SubscribeFilter { filter, options }))
    }
}

impl SubscribeProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = SubscribeProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::SUBSCRIPTION_IDENTIFIER => {
                    // Unlike in PUBLISH, at most one here (§3.8.2.1.2).
                    if p.subscription_identifier.is_some() {
                        return Err(DecodeError::DuplicateProperty { id: identifier });
                    }
                    p.subscription_identifier = Some(pr.subscription_identifier()?);
                }
                id::USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                other => return Err(unexpected(other)),
            }
        }
        Ok(p)
    }

    fn encoded_len(&self) -> usize {
        let subscription_identifier = self
            .subscription_identifier
            .map_or(0, |s| 1 + varint::encoded_len(s.get() as usize));
        subscription_identifier + user_properties_len(&self.user_properties)
    }

    fn encode(&self, out: &mut BytesMut) {
        if let Some(s) = self.subscription_identifier {
            out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
            varint::write(out, s.get() as usize);
        }
        put_user_properties(out, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    test_decoder!(Subscribe -> Subscribe);

    /// Proves the 3.1.1 layout (the example of STYLE.md), with filters kept in order.
    #[test]
    #[rustfmt::skip]
    fn v3_layout() {
        let bytes = [
            0b1000_0010, 12,                    // SUBSCRIBE, remaining length 12
            0x01, 0x04,                         // packet id 260
            0x00, 0x03, b'a', b'/', b'+', 0x01, // filter "a/+", QoS 1
            0x00, 0x01, b'#', 0x02,             // filter "#", QoS 2
        ];
        let s = decode(&bytes, V3).unwrap();
        assert_eq!(s.packet_id.get(), 260);
        assert_eq!(
            s.filters,
            [
                SubscribeFilter {
                    filter: "a/+".into(),
                    options: SubscriptionOptions::with_qos(QoS::AtLeastOnce)
                },
                SubscribeFilter {
                    filter: "#".into(),
                    options: SubscriptionOptions::with_qos(QoS::ExactlyOnce)
                },
            ]
        );
        let out = assert_round_trip(&Packet::Subscribe(s), V3);
        assert_eq!(&out[..], &bytes);
    }

    /// Proves the v5 options byte bit by bit, and the property block before the filters.
    #[test]
    #[rustfmt::skip]
    fn v5_layout() {
        let bytes = [
            0b1000_0010, 9,   // SUBSCRIBE, remaining length 9
            0x00, 0x0A,       // packet id 10
            0x02,             // property length 2
            0x0B, 0x05,       //   subscription identifier 5
            0x00, 0x01, b't', // filter "t"
            0b0010_1101,      // retain handling 2, retain as published, no local, QoS 1
        ];
        let s = decode(&bytes, V5).unwrap();
        assert_eq!(s.properties.subscription_identifier, NonZeroU32::new(5));
        assert_eq!(
            s.filters[0].options,
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            }
        );
        let out = assert_round_trip(&Packet::Subscribe(s), V5);
        assert_eq!(&out[..], &bytes);
    }

    /// Proves every property and option round trips, and that 3.1.1 keeps only the QoS.
    #[test]
    fn round_trip_every_property() {
        let s = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![
                SubscribeFilter {
                    filter: "$share/g/a/#".into(),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendIfNewSubscription,
                    },
                },
                SubscribeFilter {
                    filter: "a/#/b".into(),
                    options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
                },
            ],
            properties: SubscribeProperties {
                subscription_identifier: NonZeroU32::new(268_435_455),
                user_properties: vec![("k".into(), "v".into())],
            },
        };
        assert_round_trip(&Packet::Subscribe(s.clone()), V5);
        let mut out = BytesMut::new();
        s.encode(V3, &mut out);
        let back = decode(&out, V3).unwrap();
        assert_eq!(back.properties, SubscribeProperties::default());
        assert_eq!(
            back.filters[0].options,
            SubscriptionOptions::with_qos(QoS::ExactlyOnce)
        );
    }

    /// Proves [MQTT-3.8.1-1], [MQTT-3.8.3-2] (no filters) and [MQTT-4.7.3-1] (empty filter).
    #[test]
    fn structural_violations() {
        assert_eq!(
            decode(&[0b1000_0000, 6, 0x00, 0x01, 0x00, 0x01, b't', 0x00], V3), // flags 0000
            Err(DecodeError::ReservedFlags)
        );
        assert_eq!(
            decode(&[0b1000_0010, 2, 0x00, 0x01], V3), // packet id only
            Err(DecodeError::SubscribeNoFilters)
        );
        assert_eq!(
            decode(&[0b1000_0010, 3, 0x00, 0x01, 0x00], V5), // packet id, empty properties
            Err(DecodeError::SubscribeNoFilters)
        );
        assert_eq!(
            decode(&[0b1000_0010, 5, 0x00, 0x01, 0x00, 0x00, 0x00], V3), // filter "", QoS 0
            Err(DecodeError::EmptyTopicFilter)
        );
        assert_eq!(
            decode(&[0b1000_0010, 5, 0x00, 0x01, 0x00, 0x01, b't'], V3), // no options byte
            Err(DecodeError::UnexpectedEnd)
        );
    }

    /// Proves the options byte rules: reserved bits per version ([MQTT-3.8.3-5]), QoS 3,
    /// retain handling 3.
    #[test]
    fn options_violations() {
        for (options, version, error) in [
            (0b0100_0000u8, V5, DecodeError::SubscriptionOptionsReserved),
            (0b0000_0100, V3, DecodeError::SubscriptionOptionsReserved), // no local is v5 only
            (0b0000_0011, V3, DecodeError::SubscriptionQoSInvalid),
            (0b0000_0011, V5, DecodeError::SubscriptionQoSInvalid),
            (0b0011_0000, V5, DecodeError::RetainHandlingInvalid),
        ] {
            let mut bytes = vec![0b1000_0010, 0, 0x00, 0x01];
            if version.is_v5() {
                bytes.push(0x00); // property length 0
            }
            bytes.extend_from_slice(&[0x00, 0x01, b't', options]);
            bytes[1] = (bytes.len() - 2) as u8;
            assert_eq!(
                decode(&bytes, version),
                Err(error),
                "{options:#010b} {version:?}"
            );
        }
    }

    /// Proves the property rules: one subscription identifier, not 0, only SUBSCRIBE's ids.
    #[test]
    fn v5_property_violations() {
        for (properties, error) in [
            (
                &[0x0B, 0x01, 0x0B, 0x02][..],
                DecodeError::DuplicateProperty { id: 0x0B },
            ),
            (
                &[0x0B, 0x00][..],
                DecodeError::InvalidPropertyValue { id: 0x0B },
            ),
            (
                &[0x1F, 0x00, 0x00][..],
                DecodeError::PropertyNotAllowed { id: 0x1F },
            ),
        ] {
            let mut bytes = vec![0b1000_0010, 0, 0x00, 0x01, properties.len() as u8];
            bytes.extend_from_slice(properties);
            bytes.extend_from_slice(&[0x00, 0x01, b't', 0x00]);
            bytes[1] = (bytes.len() - 2) as u8;
            assert_eq!(decode(&bytes, V5), Err(error), "{properties:x?}");
        }
    }

    /// Proves a SubscribeFrame reads its filters one by one, in order and as often as asked, and
    /// that a bad filter or none at all is found when read, not before.
    #[test]
    #[rustfmt::skip]
    fn a_frame_reads_its_filters_one_by_one() {
        let body = [
            0x00, 0x07, // packet id 7
            0x00,       // v5 properties: none
            0x00, 0x01, b'a', 0x01, // "a", QoS 1
            0x00, 0x03, b'b', b'/', b'+', 0x02, // "b/+", QoS 2
        ];
        let frame = SubscribeFrame::decode(FLAGS, Bytes::copy_from_slice(&body), V5).unwrap();
        assert_eq!(frame.packet_id.get(), 7);
        let texts = |f: &SubscribeFrame| {
            let mut reading = f.filters();
            let mut texts = Vec::new();
            while let Some(f) = reading.next_filter().unwrap() {
                texts.push(f.filter);
            }
            texts
        };
        assert_eq!(texts(&frame), ["a", "b/+"]);
        assert_eq!(texts(&frame), ["a", "b/+"], "read again from the start");
        let mut bad = body;
        bad[body.len() - 1] = 0b1100_0000; // reserved option bits, in the last filter
        let frame = SubscribeFrame::decode(FLAGS, Bytes::copy_from_slice(&bad), V5).unwrap();
        let mut reading = frame.filters();
        assert!(reading.next_filter().unwrap().is_some(), "the first is fine");
        assert!(reading.next_filter().is_err());
        let none = SubscribeFrame::decode(FLAGS, Bytes::copy_from_slice(&body[..3]), V5).unwrap();
        assert_eq!(none.filters().next_filter().unwrap_err(), DecodeError::SubscribeNoFilters);
    }
}
