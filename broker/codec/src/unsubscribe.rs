//! UNSUBSCRIBE (§3.10).
//!
//! Layout: fixed header flags 0010; packet id, [v5: properties (User Property only)], then one
//! or more topic filters. Filters are compared as strings by the core, so any non-empty UTF-8
//! string is accepted here.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::header::{begin_packet, packet_len, packet_type};
use crate::properties::{
    block_len, decode_user_properties_only, put_block_len, put_user_properties, user_properties_len,
};
use crate::strings::{prefixed_len, put_string, Reader};
use crate::types::{PacketId, ProtocolVersion, UserProperties};

const FLAGS: u8 = 0b0010;

/// An UNSUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// At least one ([MQTT-3.10.3-2]), none empty ([MQTT-4.7.3-1]).
    pub filters: Vec<ByteString>,
    /// v5 only.
    pub user_properties: UserProperties,
}

impl Unsubscribe {
    pub fn decode(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if flags != FLAGS {
            return Err(DecodeError::ReservedFlags);
        }
        let mut r = Reader::new(&body);
        let packet_id = r.packet_id()?;
        let user_properties = if version.is_v5() {
            decode_user_properties_only(&mut r)?
        } else {
            UserProperties::new()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            if filter.is_empty() {
                return Err(DecodeError::EmptyTopicFilter);
            }
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::UnsubscribeNoFilters);
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            user_properties,
        })
    }

    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let properties_len = self.properties_len(version);
        begin_packet(
            out,
            (packet_type::UNSUBSCRIBE << 4) | FLAGS,
            self.remaining_len(version, properties_len),
        );
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_block_len(out, properties_len);
            put_user_properties(out, &self.user_properties);
        }
        for filter in &self.filters {
            put_string(out, filter);
        }
    }

    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        packet_len(self.remaining_len(version, self.properties_len(version)))
    }

    fn properties_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            user_properties_len(&self.user_properties)
        } else {
            0
        }
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
            .map(|f| prefixed_len(f.as_bytes()))
            .sum();
        2 + properties + filters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{assert_round_trip, test_decoder, Packet};

    const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    test_decoder!(Unsubscribe -> Unsubscribe);

    /// Proves the 3.1.1 layout: filters packed back to back, no options byte.
    #[test]
    #[rustfmt::skip]
    fn v3_layout() {
        let bytes = [
            0b1010_0010, 9,         // UNSUBSCRIBE, remaining length 9
            0x00, 0x02,             // packet id 2
            0x00, 0x01, b'#',       // filter "#"
            0x00, 0x02, b'a', b'b', // filter "ab"
        ];
        let u = decode(&bytes, V3).unwrap();
        assert_eq!(u.filters, [ByteString::from("#"), ByteString::from("ab")]);
        assert_eq!(&assert_round_trip(&Packet::Unsubscribe(u), V3)[..], &bytes);
    }

    /// Proves the v5 layout with a user property, and that 3.1.1 drops it.
    #[test]
    #[rustfmt::skip]
    fn v5_layout() {
        let bytes = [
            0b1010_0010, 14,                          // UNSUBSCRIBE, remaining length 14
            0x00, 0x02,                               // packet id 2
            0x07,                                     // property length 7
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', //   user property k=v
            0x00, 0x02, b'a', b'/',                   // filter "a/"
        ];
        let u = decode(&bytes, V5).unwrap();
        assert_eq!(u.user_properties, [("k".into(), "v".into())]);
        assert_eq!(
            &assert_round_trip(&Packet::Unsubscribe(u.clone()), V5)[..],
            &bytes
        );
        let mut out = BytesMut::new();
        u.encode(V3, &mut out);
        assert_eq!(&out[..], &[0xA2, 6, 0x00, 0x02, 0x00, 0x02, b'a', b'/']);
    }

    /// Proves [MQTT-3.10.1-1], [MQTT-3.10.3-2], [MQTT-4.7.3-1], and that only User Properties
    /// are allowed.
    #[test]
    #[rustfmt::skip]
    fn violations() {
        assert_eq!(
            decode(&[0b1010_0000, 5, 0x00, 0x01, 0x00, 0x01, b't'], V3), // flags 0000
            Err(DecodeError::ReservedFlags)
        );
        assert_eq!(
            decode(&[0b1010_0010, 2, 0x00, 0x01], V3), // no filter
            Err(DecodeError::UnsubscribeNoFilters)
        );
        assert_eq!(
            decode(&[0b1010_0010, 4, 0x00, 0x01, 0x00, 0x00], V3), // filter ""
            Err(DecodeError::EmptyTopicFilter)
        );
        let subscription_identifier = [
            0b1010_0010, 8,   // UNSUBSCRIBE, remaining length 8
            0x00, 0x01,       // packet id 1
            0x02,             // property length 2
            0x0B, 0x01,       //   subscription identifier 1: a SUBSCRIBE property
            0x00, 0x01, b't', // filter "t"
        ];
        assert_eq!(
            decode(&subscription_identifier, V5),
            Err(DecodeError::PropertyNotAllowed { id: 0x0B })
        );
        assert_eq!(
            decode(&[0b1010_0010, 4, 0x00, 0x00, 0x00, 0x00], V3), // packet id 0
            Err(DecodeError::PacketIdZero)
        );
    }
}
