//! Framing: finding where one packet ends in a byte stream.
//!
//! [`Framer`] wraps [`parse_fixed_header`] in an explicit state machine (ntex-mqtt's
//! `DecodeState`) for callers that read into a `BytesMut`.

use bytes::{Bytes, BytesMut};

use crate::error::DecodeError;
use crate::header::{parse_fixed_header, FrameHeader};

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
