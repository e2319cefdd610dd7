//! Where a segment's good frames end, and what a bad frame there means (`docs/store.md`,
//! "Files"): pure functions over a segment's bytes, so that the fuzzer reaches all of it.
//!
//! A writer appends whole batches and syncs each before the next, and it begins a segment only
//! after the previous one is synced. So a crash can damage only the end of the newest segment:
//! a bad frame there with no good frame anywhere after it is a **torn tail**. A bad frame
//! anywhere else, or one followed by a good frame, is **corruption**.
//!
//! Looking for a good frame after a bad one means trying every later magic byte as a frame
//! start. Checking each candidate's CRC from scratch would cost its whole body, and a torn
//! tail of random payload holds many candidates whose declared lengths fit in the file: the work
//! grows with the cube of the tail's length. Instead the resync runs one CRC over the tail and
//! checks each candidate from two prefix CRCs (about a microsecond each, see `shift`), so the
//! work is linear in the tail plus a little per candidate; the candidates waiting for their end
//! are bounded by [`RESYNC_PENDING_MAX`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::frame::{self, Frame, FrameError, Header, HEADER_BYTES, MAGIC};

/// Candidates (magic byte, header within the limit, frame within the file) whose end the resync
/// has not reached yet: 24 MiB of them at most, and about a second of work. Random bytes make
/// about `n² / 2⁴⁰` candidates in a tail of n bytes (65,536 for 256 MiB); only bytes made to look
/// like frames reach the bound. Past it the resync cannot say that no good frame follows, and the
/// bad frame is reported as corruption: the safe side, as the start stops and names the offset.
pub const RESYNC_PENDING_MAX: usize = 1 << 20;

/// Where the CRC's range begins within a frame: after the magic byte and the CRC itself.
const CRC_FROM: usize = 5;

/// How a segment's frames end, when they end well enough to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Good frames up to the last byte.
    Clean,
    /// A bad frame at `offset`, the last segment's, with no good frame after it: what a crash
    /// during the last write leaves. Everything from `offset` on is to be cut off.
    Torn { offset: usize, error: FrameError },
}

impl End {
    /// Where the good frames end.
    pub fn good_until(&self, len: usize) -> usize {
        match self {
            End::Clean => len,
            End::Torn { offset, .. } => *offset,
        }
    }
}

/// A bad frame that a crash cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: usize,
    pub error: FrameError,
    pub why: NotTorn,
}

/// Why a bad frame is corruption rather than a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotTorn {
    #[error("it is not in the shard's newest segment")]
    NotNewest,
    #[error("a good frame follows at byte offset {offset}")]
    GoodFrameFollows { offset: usize },
    #[error(
        "whether a good frame follows could not be decided within {RESYNC_PENDING_MAX} candidates"
    )]
    Undecided,
}

/// Checks every frame of `bytes` from `from` on (the segment header before it is the caller's)
/// and says where the good ones end. `newest`: whether this is the shard's newest segment, the
/// only one a crash can tear.
pub fn scan(bytes: &[u8], from: usize, newest: bool) -> Result<End, Corrupt> {
    assert!(from <= bytes.len());
    let mut at = from;
    while at < bytes.len() {
        match frame::decode(&bytes[at..]) {
            Ok(frame) => at += frame.frame_len(),
            Err(error) => return classify(bytes, at, error, newest),
        }
    }
    Ok(End::Clean)
}

fn classify(bytes: &[u8], offset: usize, error: FrameError, newest: bool) -> Result<End, Corrupt> {
    let why = if !newest {
        NotTorn::NotNewest
    } else {
        match next_good_frame(bytes, offset, RESYNC_PENDING_MAX) {
            Resync::NoneFollows => return Ok(End::Torn { offset, error }),
            Resync::Found { offset } => NotTorn::GoodFrameFollows { offset },
            Resync::Undecided => NotTorn::Undecided,
        }
    };
    Err(Corrupt { offset, error, why })
}

/// The good frames of `bytes[from..until]`, which [`scan`] has checked: their offsets, kinds
/// and bodies, without computing a CRC again.
pub fn frames(bytes: &[u8], from: usize, until: usize) -> impl Iterator<Item = (usize, Frame<'_>)> {
    let bytes = &bytes[..until];
    let mut at = from;
    std::iter::from_fn(move || {
        if at == bytes.len() {
            return None;
        }
        let header = Header::parse(&bytes[at..]).expect("scan checked this frame");
        let frame = Frame {
            kind: header.kind,
            body: &bytes[at + HEADER_BYTES..at + header.frame_len()],
        };
        let offset = at;
        at += header.frame_len();
        Some((offset, frame))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    NoneFollows,
    Found { offset: usize },
    Undecided,
}

/// A place where a frame could start: its header is good and its frame ends within the bytes.
struct Candidate {
    offset: usize,
    crc: u32,
    end: usize,
}

fn next_candidate(bytes: &[u8], from: usize) -> Option<Candidate> {
    let mut at = from;
    loop {
        at += bytes.get(at..)?.iter().position(|&b| b == MAGIC)?;
        if let Ok(header) = Header::parse(&bytes[at..]) {
            let end = at + header.frame_len();
            if end <= bytes.len() {
                return Some(Candidate {
                    offset: at,
                    crc: header.crc,
                    end,
                });
            }
        }
        at += 1;
    }
}

/// Whether a good frame starts anywhere after `bad`, in one pass.
///
/// `prefix` is the CRC-32C of `bytes[bad + 1 .. at]` as `at` moves forward. A candidate's CRC
/// covers `bytes[s..e]` (s = its offset + 5, e = its end); CRC-32C is linear, so
/// `prefix(e) = shift(prefix(s), e - s) ^ crc(bytes[s..e])`. At s the resync notes the
/// `prefix(e)` that a good frame implies; at e it compares.
fn next_good_frame(bytes: &[u8], bad: usize, pending_max: usize) -> Resync {
    let mut at = bad + 1;
    let mut prefix = 0u32;
    // (end, the prefix CRC there if the frame is good, the frame's offset), earliest end first.
    let mut pending = BinaryHeap::<Reverse<(usize, u32, usize)>>::new();
    let mut candidate = next_candidate(bytes, bad + 1);
    loop {
        let crc_start = candidate.as_ref().map(|c| c.offset + CRC_FROM);
        let first_end = pending.peek().map(|Reverse((end, ..))| *end);
        let Some(to) = crc_start.into_iter().chain(first_end).min() else {
            return Resync::NoneFollows;
        };
        prefix = crc32c::crc32c_append(prefix, &bytes[at..to]);
        at = to;
        while let Some(&Reverse((end, expected, offset))) = pending.peek() {
            if end != at {
                break;
            }
            if prefix == expected {
                return Resync::Found { offset };
            }
            pending.pop();
        }
        if crc_start == Some(at) {
            let c = candidate.take().expect("crc_start came from it");
            let expected = c.crc ^ shift(prefix, c.end - at);
            pending.push(Reverse((c.end, expected, c.offset)));
            if pending.len() > pending_max {
                return Resync::Undecided;
            }
            candidate = next_candidate(bytes, c.offset + 1);
        }
    }
}

/// The CRC-32C polynomial, bits reversed as the CRC runs.
const POLY: u32 = 0x82F6_3B78;

/// `shift(crc(a), n) ^ crc(b) = crc(a ++ b)` for any `b` of `n` bytes: what `n` more bytes do
/// to a CRC, as a product with x^(8n) modulo the polynomial. The crc32c crate's
/// `crc32c_combine` computes the same with zlib's old matrix method, about 30 µs a call; this is
/// zlib's newer one (`multmodp`, `x2nmodp`) over a table built at compile time, about 1 µs.
fn shift(crc: u32, n: usize) -> u32 {
    let mut product = 1 << 31; // x^0
    let mut k = 3; // x^(8n) = x^(n * 2^3)
    let mut n = n;
    while n != 0 {
        if n & 1 == 1 {
            product = mul_mod_poly(X_TO_2_TO_THE[k], product);
        }
        n >>= 1;
        k += 1;
    }
    mul_mod_poly(product, crc)
}

/// `X_TO_2_TO_THE[k]` = x^(2^k) modulo the polynomial, for every k `shift` can reach.
const X_TO_2_TO_THE: [u32; 3 + usize::BITS as usize] = {
    let mut table = [0; 3 + usize::BITS as usize];
    table[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < table.len() {
        table[k] = mul_mod_poly(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

/// a * b modulo the polynomial, in the reversed bit order of the CRC (bit 31 is x^0).
const fn mul_mod_poly(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut m = 1 << 31;
    while m != 0 {
        if a & m != 0 {
            product ^= b;
        }
        m >>= 1;
        b = if b & 1 == 1 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, body) in bodies.iter().enumerate() {
            frame::encode(&mut out, kind as u8, |b| b.extend_from_slice(body));
        }
        out
    }

    /// What the resync relies on: the CRC of a slice, from the CRCs of two prefixes, with
    /// `shift` agreeing with the crc32c crate's own combine at short and long distances.
    #[test]
    fn a_slice_crc_from_two_prefix_crcs() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for (s, e) in [(0, 0), (0, 10), (3, 4), (17, 999), (500, 1000)] {
            let prefix_s = crc32c::crc32c(&bytes[..s]);
            let prefix_e = crc32c::crc32c(&bytes[..e]);
            let slice = prefix_e ^ shift(prefix_s, e - s);
            assert_eq!(slice, crc32c::crc32c(&bytes[s..e]), "{s}..{e}");
        }
        for n in [1, 5, 255, 1 << 20, 300_000_007, usize::MAX] {
            for crc in [0, 1, 0xDEAD_BEEF, u32::MAX] {
                assert_eq!(
                    shift(crc, n),
                    crc32c::crc32c_combine(crc, 0, n),
                    "{crc:x} {n}"
                );
            }
        }
    }

    #[test]
    fn good_frames_end_clean_and_read_back() {
        let bytes = frames_of(&[b"one", b"", b"three"]);
        assert_eq!(scan(&bytes, 0, true), Ok(End::Clean));
        assert_eq!(scan(&bytes, bytes.len(), false), Ok(End::Clean));
        let read: Vec<(usize, u8, &[u8])> = frames(&bytes, 0, bytes.len())
            .map(|(offset, f)| (offset, f.kind, f.body))
            .collect();
        assert_eq!(
            read,
            [
                (0, 0, &b"one"[..]),
                (13, 1, &b""[..]),
                (23, 2, &b"three"[..])
            ]
        );
    }

    /// Proves a cut-off last frame is a torn tail in the newest segment and corruption in any
    /// other, at every cut, and that the frames before it are the good ones.
    #[test]
    fn a_cut_last_frame_is_torn_only_in_the_newest_segment() {
        let bytes = frames_of(&[b"kept", b"cut off somewhere"]);
        let last = 14;
        for cut in last + 1..bytes.len() {
            let end = scan(&bytes[..cut], 0, true).unwrap();
            assert_eq!(
                end,
                End::Torn {
                    offset: last,
                    error: FrameError::Short
                },
                "cut at {cut}"
            );
            assert_eq!(end.good_until(cut), last);
            assert_eq!(frames(&bytes[..cut], 0, last).count(), 1);
            let corrupt = scan(&bytes[..cut], 0, false).unwrap_err();
            assert_eq!((corrupt.offset, corrupt.why), (last, NotTorn::NotNewest));
        }
    }

    /// Proves a bad frame followed by a good one is corruption even in the newest segment, and
    /// that the report says where the good frame is.
    #[test]
    fn a_bad_frame_before_a_good_one_is_corruption() {
        let mut bytes = frames_of(&[b"first", b"second", b"third"]);
        bytes[15 + 12] ^= 0x01; // in the second frame's body
        let corrupt = scan(&bytes, 0, true).unwrap_err();
        assert_eq!(corrupt.offset, 15);
        assert!(matches!(corrupt.error, FrameError::BadCrc { .. }));
        assert_eq!(corrupt.why, NotTorn::GoodFrameFollows { offset: 31 });
    }

    /// Proves the resync is not fooled by magic bytes, frame-like headers and whole frames
    /// inside a torn tail's payload: only a frame whose CRC matches counts, however it overlaps
    /// the others.
    #[test]
    fn a_torn_tail_full_of_lookalikes_is_still_torn() {
        let mut inner = Vec::new();
        frame::encode(&mut inner, 4, |b| b.extend_from_slice(&[MAGIC; 30]));
        // The body of the frame that the crash cuts holds a whole frame; cut inside that one.
        let mut body = vec![MAGIC; 50];
        body.extend_from_slice(&inner);
        body.extend_from_slice(&[MAGIC, 0, 0, 0, 0, 1, 5, 0, 0, 0]);
        let bytes = frames_of(&[b"kept", &body]);
        let inner_at = 14 + HEADER_BYTES + 50;
        let cut = inner_at + inner.len() - 1;
        assert_eq!(
            scan(&bytes[..cut], 0, true),
            Ok(End::Torn {
                offset: 14,
                error: FrameError::Short
            })
        );
        // Uncut, the inner frame is whole: a good frame follows the (now short) outer frame.
        let whole = &bytes[..inner_at + inner.len()];
        let corrupt = scan(whole, 0, true).unwrap_err();
        assert_eq!(corrupt.why, NotTorn::GoodFrameFollows { offset: inner_at });
    }

    /// Proves the resync gives up, as corruption, when more candidates wait than it may hold,
    /// and decides when they fit.
    #[test]
    fn too_many_candidates_are_undecided() {
        // Ten candidates, every one claiming the rest of the bytes as its body.
        let mut bytes = vec![0u8];
        let len = 200;
        for i in 0..10 {
            let q = bytes.len();
            let body_len = (len - q - HEADER_BYTES) as u32;
            bytes.extend_from_slice(&[MAGIC, 0, 0, 0, 0, i]);
            bytes.extend_from_slice(&body_len.to_le_bytes());
        }
        bytes.resize(len, 0);
        assert_eq!(next_good_frame(&bytes, 0, 9), Resync::Undecided);
        assert_eq!(next_good_frame(&bytes, 0, 10), Resync::NoneFollows);
    }
}
