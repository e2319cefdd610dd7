//! One frame: one record on disk, as the layers above hand it down, `(kind, body)`.
//!
//! ```text
//! offset  size  field
//!      0     1  MAGIC (0xD5)
//!      1     4  CRC-32C, u32 little-endian, over bytes 5 .. 10 + length (kind, length, body)
//!      5     1  kind (what the body holds; the record codec above assigns them)
//!      6     4  body length, u32 little-endian, at most BODY_BYTES_MAX
//!     10     n  body
//! ```
//!
//! The CRC sits before the bytes it covers so that it covers one contiguous range: the encoder
//! computes it in one pass over what it has just written, and the reader's resync can check a
//! candidate frame from CRCs of prefixes (`scan.rs`).

/// The first byte of every frame. A reader that meets a bad frame looks for this byte to find
/// the next frame (`scan.rs`). Not 0x00 (what a hole or a zeroed block reads as), not 0xFF (what
/// erased flash reads as), not printable ASCII: few bytes of a torn tail look like a frame start.
pub const MAGIC: u8 = 0xD5;

/// Magic, CRC, kind, length.
pub const HEADER_BYTES: usize = 10;

/// The largest MQTT packet: a 4-byte remaining length of at most 268,435,455 and the byte before
/// it. `MaxMessageSize` is capped at 256 MiB as well.
const MQTT_PACKET_BYTES_MAX: u32 = 268_435_455 + 5;

/// What a record adds to the message it carries: the client id (at most 65,535 bytes), ids,
/// deadlines and flags; generous, so that the record codec above never has to count bytes.
const RECORD_EXTRA_BYTES_MAX: u32 = 1024 * 1024;

/// The largest body a frame may hold: a record holds at most one message (a PUBLISH, or the will
/// of a CONNECT) plus a little. A larger length is impossible, so a reader that meets one knows
/// the bytes are not a frame without reading on.
pub const BODY_BYTES_MAX: u32 = MQTT_PACKET_BYTES_MAX + RECORD_EXTRA_BYTES_MAX;

const _: () = assert!(BODY_BYTES_MAX as u64 + HEADER_BYTES as u64 <= u32::MAX as u64);

/// Why the bytes at some offset are not a good frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is cut short: its header or body runs past the end of the file")]
    Short,
    #[error("no frame starts here: byte 0x{found:02x} where the magic byte 0x{MAGIC:02x} belongs")]
    BadMagic { found: u8 },
    #[error("impossible body length {len} (the limit is {BODY_BYTES_MAX})")]
    TooLong { len: u32 },
    #[error("CRC-32C mismatch: the frame says 0x{stored:08x}, its bytes give 0x{computed:08x}")]
    BadCrc { stored: u32, computed: u32 },
}

/// A frame's header, read without its body: what the resync needs to weigh a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub crc: u32,
    pub kind: u8,
    pub body_len: u32,
}

impl Header {
    /// Reads the header at the start of `bytes` and checks what the header alone decides: the
    /// magic byte and the length limit.
    pub fn parse(bytes: &[u8]) -> Result<Header, FrameError> {
        let Some(&first) = bytes.first() else {
            return Err(FrameError::Short);
        };
        if first != MAGIC {
            return Err(FrameError::BadMagic { found: first });
        }
        let Some(header) = bytes.get(..HEADER_BYTES) else {
            return Err(FrameError::Short);
        };
        let body_len = u32_at(header, 6);
        if body_len > BODY_BYTES_MAX {
            return Err(FrameError::TooLong { len: body_len });
        }
        Ok(Header {
            crc: u32_at(header, 1),
            kind: header[5],
            body_len,
        })
    }

    /// Header and body.
    pub fn frame_len(&self) -> usize {
        HEADER_BYTES + self.body_len as usize
    }
}

/// A good frame, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Header and body: where the next frame starts.
    pub fn frame_len(&self) -> usize {
        HEADER_BYTES + self.body.len()
    }
}

/// Appends one frame to `out`: the header, the body that `write_body` appends (so that a record
/// codec writes in place, with no buffer of its own), then the length and the CRC. Allocates
/// only when `out` has to grow; a batch buffer reused with its capacity does not.
///
/// # Panics
/// If the body is over [`BODY_BYTES_MAX`]: the record codec above must never make one, as no
/// message it is given can be that large.
pub fn encode(out: &mut Vec<u8>, kind: u8, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[MAGIC, 0, 0, 0, 0, kind, 0, 0, 0, 0]);
    write_body(out);
    let body_len = out.len() - start - HEADER_BYTES;
    assert!(
        body_len <= BODY_BYTES_MAX as usize,
        "a frame body of {body_len} bytes is over BODY_BYTES_MAX"
    );
    out[start + 6..start + HEADER_BYTES].copy_from_slice(&(body_len as u32).to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 5..]);
    out[start + 1..start + 5].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the frame at the start of `bytes` (which may go on past it).
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    let header = Header::parse(bytes)?;
    let Some(covered) = bytes.get(5..header.frame_len()) else {
        return Err(FrameError::Short);
    };
    let computed = crc32c::crc32c(covered);
    if computed != header.crc {
        return Err(FrameError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(Frame {
        kind: header.kind,
        body: &covered[5..],
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the checksum is CRC-32C (Castagnoli, as in iSCSI and ext4), by its published check
    /// value, so that a tool written elsewhere can verify a frame.
    #[test]
    fn the_checksum_is_crc32c() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    /// The format, field by field: a frame of kind 3 with the body "hi".
    #[test]
    fn a_frame_spelled_out() {
        let mut out = Vec::new();
        encode(&mut out, 3, |body| body.extend_from_slice(b"hi"));
        let crc = crc32c::crc32c(&[3, 2, 0, 0, 0, b'h', b'i']);
        assert_eq!(crc, 0xDC4B_11E6);
        let bytes = [
            0xD5, //                   MAGIC
            0xE6, 0x11, 0x4B,
            0xDC, // CRC-32C 0xdc4b11e6 over the 7 bytes below, little-endian
            0x03, //                   kind 3
            0x02, 0x00, 0x00, 0x00, // body length 2, little-endian
            b'h', b'i', //             body
        ];
        assert_eq!(out, bytes);
        assert_eq!(
            decode(&bytes),
            Ok(Frame {
                kind: 3,
                body: b"hi"
            })
        );
    }

    /// An empty body is a frame too (a record whose kind says everything): ten bytes.
    #[test]
    fn an_empty_body() {
        let mut out = Vec::new();
        encode(&mut out, 9, |_| {});
        assert_eq!(out.len(), HEADER_BYTES);
        assert_eq!(&out[5..], [9, 0, 0, 0, 0]);
        let frame = decode(&out).unwrap();
        assert_eq!((frame.kind, frame.body), (9, &[][..]));
    }

    /// Proves frames append back to back into one buffer, each decoding where the previous one
    /// ended, and that encoding into a buffer with room does not reallocate it.
    #[test]
    fn frames_append_without_reallocating() {
        let bodies: [&[u8]; 4] = [b"first", b"", b"third body", &[0xD5; 40]];
        let mut out = Vec::with_capacity(1024);
        let buffer = out.as_ptr();
        for (kind, body) in bodies.iter().enumerate() {
            encode(&mut out, kind as u8, |b| b.extend_from_slice(body));
        }
        assert_eq!(out.as_ptr(), buffer);

        let mut at = 0;
        for (kind, body) in bodies.iter().enumerate() {
            let frame = decode(&out[at..]).unwrap();
            assert_eq!(frame.kind, kind as u8);
            assert_eq!(frame.body, *body);
            at += frame.frame_len();
        }
        assert_eq!(at, out.len());
    }

    /// Proves a frame cut anywhere is `Short`, never a frame and never another error.
    #[test]
    fn a_frame_cut_anywhere_is_short() {
        let mut out = Vec::new();
        encode(&mut out, 1, |b| {
            b.extend_from_slice(b"a body of some length")
        });
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Err(FrameError::Short), "cut at {cut}");
        }
        assert!(decode(&out).is_ok());
    }

    /// Proves a change to any byte of a frame is caught: the magic byte as `BadMagic`, every
    /// other byte as a CRC mismatch (or, in the length, as `Short` or `TooLong`).
    #[test]
    fn any_flipped_byte_is_caught() {
        let mut out = Vec::new();
        encode(&mut out, 1, |b| b.extend_from_slice(b"body"));
        for at in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[at] ^= 1 << bit;
                let error = decode(&bad).unwrap_err();
                match at {
                    0 => assert_eq!(error, FrameError::BadMagic { found: bad[0] }),
                    6..=9 => assert!(
                        matches!(
                            error,
                            FrameError::Short
                                | FrameError::TooLong { .. }
                                | FrameError::BadCrc { .. }
                        ),
                        "byte {at} bit {bit}: {error:?}"
                    ),
                    _ => assert!(
                        matches!(error, FrameError::BadCrc { .. }),
                        "byte {at} bit {bit}: {error:?}"
                    ),
                }
            }
        }
    }

    /// Proves a length over the limit is refused from the header alone, before any body.
    #[test]
    fn an_impossible_length_is_refused_from_the_header() {
        let too_long = BODY_BYTES_MAX + 1;
        let mut header = vec![MAGIC, 0, 0, 0, 0, 1];
        header.extend_from_slice(&too_long.to_le_bytes());
        assert_eq!(decode(&header), Err(FrameError::TooLong { len: too_long }));
        let at_limit = BODY_BYTES_MAX.to_le_bytes();
        header[6..].copy_from_slice(&at_limit);
        assert_eq!(decode(&header), Err(FrameError::Short));
    }

    /// A record codec that writes a body over the limit is a bug, and is stopped.
    #[test]
    #[should_panic(expected = "over BODY_BYTES_MAX")]
    fn encoding_a_body_over_the_limit_panics() {
        let mut out = Vec::new();
        encode(&mut out, 1, |b| {
            b.resize(b.len() + BODY_BYTES_MAX as usize + 1, 0)
        });
    }
}
