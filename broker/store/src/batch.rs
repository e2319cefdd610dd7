//! One batch: the frames of one group commit, written to a segment as one write
//! (`writer.rs`), under a header that says where the batch begins and ends and checks it whole.
//!
//! ```text
//! offset  size  field
//!      0     1  BATCH_MAGIC (0xBA)
//!      1     4  CRC-32C, u32 little-endian, over bytes 5 .. 33 (the rest of this header)
//!      5     8  salt, u64 little-endian: the segment's, as its header says (segment.rs)
//!     13     8  offset, u64 little-endian: where this header lies in its segment
//!     21     8  frames length n, u64 little-endian: the bytes after this header that are the
//!               batch's
//!     29     4  CRC-32C, u32 little-endian, over those n bytes
//!     33     n  frames (frame.rs), back to back
//! ```
//!
//! Why a header per batch: the page cache writes a batch's pages in any order, so a power cut
//! during the last write can leave a hole (zeros, or whatever the blocks held before) in the
//! middle of the last batch with good frames after it. Nothing in that batch was acknowledged
//! (a batch is acknowledged once its write returns), so the reader must cut it as a torn tail;
//! only a batch after it would prove that the damaged one was written whole before
//! (`scan.rs`). The header tells the two apart: it bounds the batch, so frames that lie within
//! a damaged batch's length are its own, and a later batch has a header of its own, at the
//! offset it names, with its segment's salt.
//!
//! The salt is random per segment (`segment::SegmentHeader::new`). With the offset, it makes a
//! header good only where the writer put it: old bytes that a hole shows (a batch of a segment
//! that compaction removed, whose blocks the file system gave to this one) hold headers of
//! another segment, or of another offset, and are not taken for a batch. SQLite's write-ahead
//! log copies its header's salts into every frame for the same reason.
//!
//! The header's own CRC covers the batch's CRC and length, so that a reader knows a batch's
//! extent from its header alone, before it reads the frames. Both CRCs sit before the bytes
//! they cover, as in `frame.rs`: the batch is gathered first and its header filled in once
//! ([`Batch::seal`]), as the writer takes it.

use std::ops::Range;

/// The first byte of every batch. Not a frame's magic byte (0xD5), not 0x00 or 0xFF, not
/// printable ASCII: a hole or a payload rarely holds one where a batch could begin.
pub const BATCH_MAGIC: u8 = 0xBA;

/// Magic, header CRC, salt, offset, frames length, frames CRC.
pub const HEADER_BYTES: usize = 33;

/// Where the header's CRC range begins: after the magic byte and the CRC itself.
const HEADER_CRC_FROM: usize = 5;
const SALT_AT: usize = 5;
const OFFSET_AT: usize = 13;
const LEN_AT: usize = 21;
const FRAMES_CRC_AT: usize = 29;

const _: () = assert!(FRAMES_CRC_AT + 4 == HEADER_BYTES);
const _: () = assert!(BATCH_MAGIC != crate::frame::MAGIC);

/// Why the bytes at some offset are not a good batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch header is cut short by the end of the file")]
    Short,
    #[error(
        "no batch starts here: byte 0x{found:02x} where the magic byte 0x{BATCH_MAGIC:02x} belongs"
    )]
    BadMagic { found: u8 },
    #[error("CRC-32C mismatch in the batch header")]
    BadHeaderCrc,
    #[error("the batch header is another segment's (its salt is 0x{found:016x}): old bytes")]
    WrongSalt { found: u64 },
    #[error("the batch header says it lies at byte offset {found}: old bytes")]
    WrongOffset { found: u64 },
    #[error("the batch's {len} bytes of frames run past the end of the file")]
    Cut { len: u64 },
    #[error(
        "CRC-32C mismatch over the batch's frames: the header says 0x{stored:08x}, \
         the bytes give 0x{computed:08x}"
    )]
    BadCrc { stored: u32, computed: u32 },
    #[error("the batch's CRC matches, but its frames do not fill it")]
    Unframed,
}

/// A batch header that is good where it lies: what the reader knows before the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub frames_len: u64,
    pub frames_crc: u32,
}

impl Header {
    /// Reads the header at `segment[at..]` and checks it: magic, its own CRC, the segment's
    /// salt and its own offset. Its frames are not checked ([`check`] does).
    pub fn parse(segment: &[u8], at: usize, salt: u64) -> Result<Header, BatchError> {
        let bytes = segment.get(at..).unwrap_or_default();
        let Some(&first) = bytes.first() else {
            return Err(BatchError::Short);
        };
        if first != BATCH_MAGIC {
            return Err(BatchError::BadMagic { found: first });
        }
        let Some(header) = bytes.get(..HEADER_BYTES) else {
            return Err(BatchError::Short);
        };
        if crc32c::crc32c(&header[HEADER_CRC_FROM..]) != u32_at(header, 1) {
            return Err(BatchError::BadHeaderCrc);
        }
        let found = u64_at(header, SALT_AT);
        if found != salt {
            return Err(BatchError::WrongSalt { found });
        }
        let found = u64_at(header, OFFSET_AT);
        if found != at as u64 {
            return Err(BatchError::WrongOffset { found });
        }
        Ok(Header {
            frames_len: u64_at(header, LEN_AT),
            frames_crc: u32_at(header, FRAMES_CRC_AT),
        })
    }

    /// Where the batch that begins at `at` ends, if the header is right about its length.
    pub fn end(&self, at: usize) -> u64 {
        (at as u64 + HEADER_BYTES as u64).saturating_add(self.frames_len)
    }
}

/// Checks the batch at `segment[at..]`, header and frames CRC, and returns where its frames
/// lie. Whether the frames fill it is the caller's to check (`scan.rs`).
pub fn check(segment: &[u8], at: usize, salt: u64) -> Result<Range<usize>, BatchError> {
    let header = Header::parse(segment, at, salt)?;
    if header.end(at) > segment.len() as u64 {
        return Err(BatchError::Cut {
            len: header.frames_len,
        });
    }
    let frames = at + HEADER_BYTES..header.end(at) as usize;
    let computed = crc32c::crc32c(&segment[frames.clone()]);
    if computed != header.frames_crc {
        return Err(BatchError::BadCrc {
            stored: header.frames_crc,
            computed,
        });
    }
    Ok(frames)
}

/// The first good batch header at or after `from`: proof that the writer wrote past
/// everything before it. Linear in the bytes: a candidate costs a byte comparison and a
/// look at its offset field, and only one that names its own offset has its CRC computed.
pub fn next_good_header(segment: &[u8], from: usize, salt: u64) -> Option<usize> {
    let mut at = from;
    loop {
        at += segment.get(at..)?.iter().position(|&b| b == BATCH_MAGIC)?;
        let names_itself = segment
            .get(at + OFFSET_AT..at + OFFSET_AT + 8)
            .is_some_and(|field| u64_at(field, 0) == at as u64);
        if names_itself && Header::parse(segment, at, salt).is_ok() {
            return Some(at);
        }
        at += 1;
    }
}

/// The frames length a header says, read without checking it: for a batch that
/// [`check`] passed.
pub(crate) fn frames_len_unchecked(header: &[u8]) -> usize {
    u64_at(header, LEN_AT) as usize
}

/// The header of a batch of `frames` that lies at `offset` in a segment salted `salt`.
pub fn header(salt: u64, offset: u64, frames: &[u8]) -> [u8; HEADER_BYTES] {
    let mut out = [0; HEADER_BYTES];
    out[0] = BATCH_MAGIC;
    out[SALT_AT..SALT_AT + 8].copy_from_slice(&salt.to_le_bytes());
    out[OFFSET_AT..OFFSET_AT + 8].copy_from_slice(&offset.to_le_bytes());
    out[LEN_AT..LEN_AT + 8].copy_from_slice(&(frames.len() as u64).to_le_bytes());
    out[FRAMES_CRC_AT..].copy_from_slice(&crc32c::crc32c(frames).to_le_bytes());
    let crc = crc32c::crc32c(&out[HEADER_CRC_FROM..]);
    out[1..HEADER_CRC_FROM].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A batch as it gathers: room for its header, then frames appended one by one as records are
/// made (`frame::encode` into [`Batch::frames_out`]), with no work for the header until the
/// writer takes the batch and [`Batch::seal`]s it. Cleared, it keeps its capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The header's room, then the frames.
    bytes: Vec<u8>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            bytes: vec![0; HEADER_BYTES],
        }
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// The buffer frames are appended to. Append only: the bytes already in it (the header's
    /// room first) are the batch's.
    pub fn frames_out(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// No frames yet.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() == HEADER_BYTES
    }

    /// The bytes the batch takes in a segment, its header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    pub fn frames(&self) -> &[u8] {
        &self.bytes[HEADER_BYTES..]
    }

    /// Back to no frames, keeping the capacity.
    pub fn clear(&mut self) {
        self.bytes.truncate(HEADER_BYTES);
    }

    /// Appends the frames of `later` (a batch gathered after this one): one batch of both.
    pub fn append(&mut self, later: &Batch) {
        self.bytes.extend_from_slice(later.frames());
    }

    /// Fills in the header for a batch written at `offset` of a segment salted `salt`, and
    /// returns the whole batch as it is to be written: one CRC pass over the frames. Sealed
    /// again (a write that failed and is tried elsewhere), the header is made afresh.
    pub fn seal(&mut self, salt: u64, offset: u64) -> &[u8] {
        assert!(
            self.bytes.len() >= HEADER_BYTES,
            "a batch's header room was written over"
        );
        let (room, frames) = self.bytes.split_at_mut(HEADER_BYTES);
        room.copy_from_slice(&header(salt, offset, frames));
        &self.bytes
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(field)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    const SALT: u64 = 0x0123_4567_89AB_CDEF;

    fn sealed(frames: &[&[u8]], offset: u64) -> Vec<u8> {
        let mut batch = Batch::new();
        for (kind, body) in frames.iter().enumerate() {
            frame::encode(batch.frames_out(), kind as u8, |b| {
                b.extend_from_slice(body)
            });
        }
        batch.seal(SALT, offset).to_vec()
    }

    /// The format, field by field: a batch of one frame (kind 3, body "hi", as in `frame.rs`)
    /// at byte offset 30 of a segment salted 0x0123456789abcdef.
    #[test]
    fn a_batch_spelled_out() {
        // frame.rs's frame, spelled out there.
        let frames = [
            0xD5, 0xE6, 0x11, 0x4B, 0xDC, 0x03, 0x02, 0x00, 0x00, 0x00, b'h', b'i',
        ];
        assert_eq!(crc32c::crc32c(&frames), 0xA10D_DE86);
        let covered = [
            0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, // salt
            30, 0, 0, 0, 0, 0, 0, 0, //                      offset 30
            12, 0, 0, 0, 0, 0, 0, 0, //                      12 bytes of frames
            0x86, 0xDE, 0x0D, 0xA1, //                       their CRC-32C
        ];
        assert_eq!(crc32c::crc32c(&covered), 0x2631_73BE);
        let mut expected = vec![
            0xBA, //                   BATCH_MAGIC
            0xBE, 0x73, 0x31, 0x26, // CRC-32C 0x263173be over the 28 bytes below
        ];
        expected.extend_from_slice(&covered);
        expected.extend_from_slice(&frames);

        let mut batch = Batch::new();
        frame::encode(batch.frames_out(), 3, |b| b.extend_from_slice(b"hi"));
        assert_eq!(batch.seal(SALT, 30), expected);
        let mut segment = vec![0u8; 30];
        segment.extend_from_slice(&expected);
        assert_eq!(check(&segment, 30, SALT), Ok(63..75));
        assert_eq!(
            Header::parse(&segment, 30, SALT),
            Ok(Header {
                frames_len: 12,
                frames_crc: 0xA10D_DE86
            })
        );
    }

    /// Proves a gathering batch reserves its header's room from the start, so that appending
    /// frames is all a record costs, and that clearing and appending keep one header.
    #[test]
    fn a_batch_gathers_frames_after_its_header_room() {
        let mut batch = Batch::new();
        assert!(batch.is_empty());
        assert_eq!(batch.len(), HEADER_BYTES);
        frame::encode(batch.frames_out(), 1, |b| b.extend_from_slice(b"one"));
        assert!(!batch.is_empty());
        let mut later = Batch::new();
        frame::encode(later.frames_out(), 2, |b| b.extend_from_slice(b"two"));
        batch.append(&later);
        let frames = batch.frames().to_vec();
        assert_eq!(frames.len(), 2 * (frame::HEADER_BYTES + 3));
        let bytes = batch.seal(SALT, 100).to_vec();
        assert_eq!(&bytes[HEADER_BYTES..], frames);
        let capacity = batch.capacity();
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.capacity(), capacity);
    }

    /// Proves every byte of a batch is checked: a flip in the header is named by the field it
    /// hit (the magic, or the header's CRC, which covers the rest), and a flip in the frames is
    /// a frames CRC mismatch.
    #[test]
    fn any_flipped_byte_is_caught() {
        let good = sealed(&[b"first", b"second"], 0);
        assert!(check(&good, 0, SALT).is_ok());
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x08;
            let error = check(&bad, 0, SALT).unwrap_err();
            match at {
                0 => assert_eq!(error, BatchError::BadMagic { found: bad[0] }),
                1..HEADER_BYTES => assert_eq!(error, BatchError::BadHeaderCrc, "byte {at}"),
                _ => assert!(matches!(error, BatchError::BadCrc { .. }), "byte {at}"),
            }
        }
    }

    /// Proves a header is good only in its own segment and at its own offset: a whole, good
    /// batch copied elsewhere (old bytes in a hole) is not taken for one.
    #[test]
    fn a_header_is_good_only_where_it_was_written() {
        let batch = sealed(&[b"old"], 40);
        let mut segment = vec![0u8; 40];
        segment.extend_from_slice(&batch);
        assert!(check(&segment, 40, SALT).is_ok());
        assert_eq!(
            check(&segment, 40, SALT ^ 1),
            Err(BatchError::WrongSalt { found: SALT })
        );
        let mut moved = vec![0u8; 41];
        moved.extend_from_slice(&batch);
        assert_eq!(
            check(&moved, 41, SALT),
            Err(BatchError::WrongOffset { found: 40 })
        );
        assert_eq!(next_good_header(&moved, 0, SALT), None);
        assert_eq!(next_good_header(&segment, 0, SALT), Some(40));
        assert_eq!(next_good_header(&segment, 41, SALT), None);
    }

    /// Proves a batch cut anywhere is `Short` (in its header) or `Cut` (in its frames).
    #[test]
    fn a_batch_cut_anywhere() {
        let good = sealed(&[b"a body", b"another"], 0);
        for cut in 0..good.len() {
            let expected = if cut < HEADER_BYTES {
                BatchError::Short
            } else {
                BatchError::Cut {
                    len: (good.len() - HEADER_BYTES) as u64,
                }
            };
            assert_eq!(check(&good[..cut], 0, SALT), Err(expected), "cut at {cut}");
        }
    }

    /// Proves a length that overflows the offset arithmetic is a cut batch, not a panic.
    #[test]
    fn an_impossible_length_is_cut() {
        let mut header = header(SALT, 0, b"");
        header[LEN_AT..LEN_AT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&header[HEADER_CRC_FROM..]);
        header[1..5].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            check(&header, 0, SALT),
            Err(BatchError::Cut { len: u64::MAX })
        );
    }
}
