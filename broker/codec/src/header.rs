//! The fixed header (§2.1): the packet types, reading a header ([`parse_fixed_header`]) and
//! writing one ([`begin_packet`]). This module imports no packet file, so every packet file can
//! import it without making a circle.
//!
//! [`parse_fixed_header`] reads the first byte and the remaining length (at most five bytes) and
//! checks the declared size against the limit *before* any of the body is buffered, so a peer
//! cannot make the broker hold more than `max_packet_size` bytes for it.

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;
use crate::varint::{self, VarintRead};

/// MQTT Control Packet types: the high nibble of the first byte (§2.1.2).
pub mod packet_type {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Fixed header, parsed before the body is buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub first_byte: u8,
    /// Bytes taken by the fixed header: 1 + the length of the remaining-length integer (2..=5).
    pub header_len: usize,
    /// Bytes of the body (variable header + payload).
    pub remaining_len: usize,
}

impl FrameHeader {
    /// Bytes of the whole packet.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }

    /// The MQTT Control Packet type: the high nibble of the first byte.
    pub fn packet_type(&self) -> u8 {
        self.first_byte >> 4
    }
}

/// `Ok(None)`: `buf` does not yet hold the whole fixed header (need more bytes; a normal state).
/// `Err(PacketTooLarge)` as soon as the declared `header_len + remaining_len` exceeds
/// `max_packet_size`, `Err(MalformedRemainingLength)` for a 5th continuation byte. Never looks
/// past the fixed header.
#[inline]
pub fn parse_fixed_header(
    buf: &[u8],
    max_packet_size: u32,
) -> Result<Option<FrameHeader>, DecodeError> {
    let Some((&first_byte, rest)) = buf.split_first() else {
        return Ok(None);
    };
    match varint::decode(rest) {
        VarintRead::Incomplete => Ok(None),
        VarintRead::TooLong => Err(DecodeError::MalformedRemainingLength),
        VarintRead::Done { value, len } => {
            let header = FrameHeader {
                first_byte,
                header_len: 1 + len,
                remaining_len: value as usize,
            };
            let size = header.frame_len();
            if size > max_packet_size as usize {
                return Err(DecodeError::PacketTooLarge {
                    size: u32::try_from(size).unwrap_or(u32::MAX),
                    max: max_packet_size,
                });
            }
            Ok(Some(header))
        }
    }
}

/// Length of a whole packet whose body is `remaining` bytes long.
#[inline]
pub(crate) fn packet_len(remaining: usize) -> usize {
    1 + varint::encoded_len(remaining) + remaining
}

/// Reserves room for the whole packet and writes its fixed header. Every encoder starts here, so
/// the rest of the packet is written without reallocating `out`.
#[inline]
pub(crate) fn begin_packet(out: &mut BytesMut, first_byte: u8, remaining: usize) {
    out.reserve(packet_len(remaining));
    out.put_u8(first_byte);
    varint::write(out, remaining);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves "need more bytes" for every proper prefix of a fixed header.
    #[test]
    fn partial_headers_need_more() {
        assert_eq!(parse_fixed_header(&[], 100), Ok(None));
        assert_eq!(parse_fixed_header(&[0x30], 100), Ok(None));
        assert_eq!(parse_fixed_header(&[0x30, 0x80], 1 << 20), Ok(None));
        assert_eq!(
            parse_fixed_header(&[0x30, 0x80, 0x80, 0x80], u32::MAX),
            Ok(None)
        );
    }

    /// Proves the header is parsed without the body, and its lengths add up.
    #[test]
    #[rustfmt::skip]
    fn header_without_body() {
        let header = parse_fixed_header(
            &[
                0b0011_0010, // PUBLISH, QoS 1
                0xC8, 0x01,  // remaining length 200
            ],
            1000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            header,
            FrameHeader {
                first_byte: 0x32,
                header_len: 3,
                remaining_len: 200
            }
        );
        assert_eq!(header.frame_len(), 203);
        assert_eq!(header.packet_type(), 3);
    }

    /// Proves the limit counts the fixed header too, and is checked from the header alone.
    #[test]
    #[rustfmt::skip]
    fn too_large_is_caught_before_the_body() {
        let header = [
            0b0011_0000, // PUBLISH
            0x7E,        // remaining length 126: frame of 128 bytes
        ];
        assert!(parse_fixed_header(&header, 128).unwrap().is_some());
        assert_eq!(
            parse_fixed_header(&header, 127),
            Err(DecodeError::PacketTooLarge {
                size: 128,
                max: 127
            })
        );
    }

    /// Proves a fifth remaining-length byte is malformed, whatever follows.
    #[test]
    fn fifth_length_byte_is_malformed() {
        assert_eq!(
            parse_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], u32::MAX),
            Err(DecodeError::MalformedRemainingLength)
        );
    }

    /// Proves the header written by `begin_packet` is the one `parse_fixed_header` reads, that
    /// `packet_len` counts it, and that the whole packet's room is reserved up front.
    #[test]
    fn written_header_reads_back() {
        for remaining in [0, 127, 128, 16_384, 2_097_152] {
            let mut out = BytesMut::new();
            begin_packet(&mut out, 0x32, remaining);
            assert!(out.capacity() >= packet_len(remaining));
            let header = parse_fixed_header(&out, u32::MAX).unwrap().unwrap();
            assert_eq!(header.first_byte, 0x32);
            assert_eq!(header.header_len, out.len());
            assert_eq!(header.remaining_len, remaining);
            assert_eq!(header.frame_len(), packet_len(remaining));
        }
    }
}
