//! Framing: finding where one packet ends in a byte stream.
//!
//! [`Framer`] wraps [`parse_fixed_header`] in an explicit state machine (ntex-mqtt's
//! `DecodeState`). It works over any buffer: [`Framer::next_frame`] splits frames off a
//! `BytesMut` the caller reads into; [`Framer::next_frame_len`] only measures them, for a caller
//! that copies each frame out of a buffer it does not own (the broker reads into one buffer per
//! shard and keeps only a partial frame per connection).

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

/// Framing as an explicit state machine: `Header -> Body(FrameHeader) -> Header`. "Need more
/// bytes" is a normal state (`Ok(None)`); an error leaves the stream without recoverable
/// framing, and the connection must be closed.
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

    /// The length of the frame being read, once its header is known: the room to reserve for
    /// it while waiting for the rest (bounded by the limit).
    pub fn frame_len(&self) -> Option<usize> {
        match self.state {
            DecodeState::Header => None,
            DecodeState::Body(header) => Some(header.frame_len()),
        }
    }

    /// The length of the whole frame at the front of `data`, once all of it is there; the
    /// caller takes those bytes, and the framer expects the next frame. `Ok(None)`: need more
    /// bytes (then [`Framer::frame_len`] tells how many in all, when the header is known).
    /// `data` must start where it started on the previous call, unless that call returned a
    /// frame: then just past that frame.
    #[inline]
    pub fn next_frame_len(&mut self, data: &[u8]) -> Result<Option<usize>, DecodeError> {
        let header = match self.state {
            DecodeState::Body(header) => header,
            DecodeState::Header => {
                let Some(header) = parse_fixed_header(data, self.max_packet_size)? else {
                    return Ok(None);
                };
                header
            }
        };
        let frame_len = header.frame_len();
        if data.len() < frame_len {
            self.state = DecodeState::Body(header);
            return Ok(None);
        }
        self.state = DecodeState::Header;
        Ok(Some(frame_len))
    }

    /// Splits one whole frame off the front of `buf` (zero-copy) once it is complete. Reserves
    /// the frame's length in `buf` when the header is known so the body is read without
    /// reallocations.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        match self.next_frame_len(buf)? {
            Some(frame_len) => Ok(Some(buf.split_to(frame_len).freeze())),
            None => {
                if let Some(frame_len) = self.frame_len() {
                    // Bounded by max_packet_size, checked with the header; a no-op once done.
                    buf.reserve(frame_len - buf.len());
                }
                Ok(None)
            }
        }
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

    /// Proves framing over a slice the caller owns: whole frames are measured in place, and a
    /// partial one reports nothing until its header is whole, then its whole length.
    #[test]
    #[rustfmt::skip]
    fn measures_frames_in_a_slice() {
        let stream = [
            0b1100_0000, 0,       // PINGREQ
            0b0011_0000, 0x80,    // PUBLISH, first byte of remaining length...
            0x01,                 // ...128: a frame of 131 bytes
            b't',                 // the first byte of its body
        ];
        let mut framer = Framer::new(1024);
        assert_eq!(framer.next_frame_len(&stream), Ok(Some(2)));
        assert_eq!(framer.frame_len(), None, "ready for the next frame");
        assert_eq!(framer.next_frame_len(&stream[2..4]), Ok(None));
        assert_eq!(framer.frame_len(), None, "the header is not whole yet");
        assert_eq!(framer.next_frame_len(&stream[2..]), Ok(None));
        assert_eq!(framer.frame_len(), Some(131));
        let mut whole = stream[2..].to_vec();
        whole.resize(131, 0);
        assert_eq!(framer.next_frame_len(&whole), Ok(Some(131)));
        assert_eq!(framer.frame_len(), None);
    }
}
