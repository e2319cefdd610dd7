//! Framing: finding where one packet ends in a byte stream.
//!
//! [`parse_fixed_header`] reads the first byte and the remaining length (at most five bytes) and
//! checks the declared size against the limit *before* any of the body is buffered, so a peer
//! cannot make the broker hold more than `max_packet_size` bytes for it. [`Framer`] wraps that in
//! an explicit state machine (ntex-mqtt's `DecodeState`) for callers that read into a `BytesMut`.

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;
use crate::varint::{self, VarintRead};

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

/// Where the framer is in the current packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecodeState {
    /// Waiting for a whole fixed header.
    Header,
    /// The header is known (and within the limit); waiting for the rest of the frame.
    Body(FrameHeader),
}

/// Framing as an explicit state machine for callers that keep a `BytesMut`:
/// `Header -> Body(FrameHeader) -> Header`.
#[derive(Debug)]
pub struct Framer {
    state: DecodeState,
    max_packet_size: u32,
}

impl Framer {
    pub fn new(max_packet_size: u32) -> Self {
        Framer {
            state: DecodeState::Header,
            max_packet_size,
        }
    }

    /// The limit every frame is checked against.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Splits one whole frame off the front of `buf` (zero-copy) once it is complete. Reserves
    /// the frame's length in `buf` when the header is known so the body is read without
    /// reallocations. After an error the connection must be closed: the stream has no
    /// recoverable framing left.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let header = match self.state {
            DecodeState::Body(header) => header,
            DecodeState::Header => {
                let Some(header) = parse_fixed_header(buf, self.max_packet_size)? else {
                    return Ok(None);
                };
                let frame_len = header.frame_len();
                if buf.len() < frame_len {
                    // Bounded by max_packet_size, checked above.
                    buf.reserve(frame_len - buf.len());
                }
                self.state = DecodeState::Body(header);
                header
            }
        };
        let frame_len = header.frame_len();
        if buf.len() < frame_len {
            return Ok(None);
        }
        self.state = DecodeState::Header;
        Ok(Some(buf.split_to(frame_len).freeze()))
    }
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

    /// Proves the framer splits frames byte by byte, reserves the whole frame once the header is
    /// known, and leaves the next frame's bytes in the buffer.
    #[test]
    #[rustfmt::skip]
    fn framer_splits_a_stream() {
        let stream = [
            0b1100_0000, 0,       // PINGREQ
            0b1110_0000, 1, 0x8E, // DISCONNECT, reason 0x8E
            0b1101_0000,          // first byte of a PINGRESP
        ];
        let mut framer = Framer::new(1024);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in &stream {
            buf.extend_from_slice(&[byte]);
            if let Some(frame) = framer.next_frame(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, [&[0xC0, 0][..], &[0xE0, 1, 0x8E][..]]);
        assert_eq!(&buf[..], &[0xD0]);
        assert_eq!(framer.next_frame(&mut buf), Ok(None));
    }

    /// Proves the body's room is reserved as soon as the header is known.
    #[test]
    fn framer_reserves_the_frame() {
        let mut framer = Framer::new(1 << 20);
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x08][..]); // PUBLISH, remaining length 1024
        assert_eq!(framer.next_frame(&mut buf), Ok(None));
        assert!(buf.capacity() >= 1027);
        buf.extend_from_slice(&[0u8; 1024]);
        let frame = framer.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(frame.len(), 1027);
        assert!(buf.is_empty());
    }

    /// Proves the framer refuses an oversized frame before buffering it.
    #[test]
    fn framer_refuses_oversized() {
        let mut framer = Framer::new(64);
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x01][..]); // PUBLISH, remaining length 128
        assert_eq!(
            framer.next_frame(&mut buf),
            Err(DecodeError::PacketTooLarge { size: 131, max: 64 })
        );
        assert!(buf.capacity() < 131);
    }
}
