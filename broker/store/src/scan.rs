//! Where a segment's good batches end, and what a bad batch there means (`docs/store.md`,
//! "Files"): pure functions over a segment's bytes, so that the fuzzer reaches all of it.
//!
//! A writer writes a batch whole, with one write, and writes the next only after that one
//! returned (when it is durable); it begins a segment only after the previous one is durable.
//! So a crash can damage only the last batch of the newest segment, and anywhere in it: the
//! page cache writes a batch's pages in any order, and a power cut can leave a hole in the
//! middle with good frames after it. Nothing in that batch was acknowledged. So:
//!
//! - a bad batch in the newest segment with no good batch header after it is a **torn tail**,
//!   cut at the batch's start. After it means after its end when its header is good (the
//!   frames within its length are its own, whatever they look like), and anywhere after its
//!   first byte when its header is bad (its length is unknown; but a good header is at a batch
//!   boundary, and so proves that a later batch was written);
//! - a bad batch anywhere else is **corruption**, reported at the first bad frame in it (the
//!   batch's start if its header is bad), so that `recover_truncate` keeps what is before;
//! - a batch whose CRC matches but whose frames do not fill it was written so: corruption;
//! - zeros from a batch boundary to the end of the newest segment are where the writer
//!   stopped: segments are prewritten with zeros (`writer.rs`), and a batch header never begins
//!   with a zero byte. A batch whose write left nothing but zeros is one of them: nothing in it
//!   was acknowledged. An older segment may have zeros after its batches too (the writer leaves
//!   a prewritten segment without waiting for them to be cut off), but the next segment's header
//!   says where its batches end, and the reader scans it up to there: zeros before that are
//!   damage ([`Tail`]).
//!
//! "Good batch header" is strict: the right magic byte, its own CRC, the segment's salt and its
//! own offset (`batch.rs`). Frames alone never count: bytes of the last batch past a hole are
//! good frames, and so are old bytes that a hole shows.

use crate::batch::{self, BatchError, Header};
use crate::frame::{self, Frame, FrameError, HEADER_BYTES};

/// What may follow a segment's last good batch: what the writer can have left there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The shard's newest segment: a crash can tear its last batch, and the zeros it was
    /// prewritten with follow its batches.
    Newest,
    /// An older segment, cut where the next segment's header says its batches end: batches
    /// to the last byte, and nothing else.
    Recorded,
    /// An older segment whose end is not recorded: the next one's header was torn by a crash
    /// while the writer began it (or is damaged, or the next segment is missing, which the
    /// reader reports when it gets there). The writer left it whole, and the zeros it was
    /// prewritten with may follow its batches. Damage that zeroed its last batches cannot be
    /// told from them here: the recorded end is what tells it elsewhere.
    Left,
}

/// How a segment's batches end, when they end well enough to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Good batches up to the last byte.
    Clean,
    /// Good batches up to `offset`, zeros after it: the rest of a prewritten segment.
    Zeros { offset: usize },
    /// A bad batch at `offset`, the newest segment's last: what a crash during the last write
    /// leaves. Everything from `offset` on is to be cut off.
    Torn { offset: usize, error: BatchError },
}

impl End {
    /// Where the good batches end.
    pub fn good_until(&self, len: usize) -> usize {
        match self {
            End::Clean => len,
            End::Zeros { offset } | End::Torn { offset, .. } => *offset,
        }
    }
}

/// A bad batch that a crash cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    /// Where the batch begins.
    pub batch: usize,
    pub error: BatchError,
    /// Its first bad frame, when its header is good: where the damage begins.
    pub frame: Option<(usize, FrameError)>,
    pub why: NotTorn,
}

impl Corrupt {
    /// Where the damage begins: everything before it is good.
    pub fn offset(&self) -> usize {
        self.frame.map_or(self.batch, |(at, _)| at)
    }
}

/// Why a bad batch is corruption rather than a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotTorn {
    #[error("it is not in the shard's newest segment")]
    NotNewest,
    #[error("a good batch follows at byte offset {offset}, so this one was written whole before")]
    BatchFollows { offset: usize },
    #[error("its CRC matches: it was written so")]
    Whole,
}

/// Checks every batch of `bytes` from `from` on (the segment header before it is the
/// caller's), against the segment's `salt`, and says where the good ones end, given what may
/// follow them (`tail`).
pub fn scan(bytes: &[u8], from: usize, salt: u64, tail: Tail) -> Result<End, Corrupt> {
    assert!(from <= bytes.len());
    let mut at = from;
    while at < bytes.len() {
        match batch::check(bytes, at, salt) {
            Ok(frames) => {
                if let Err(frame) = fill(bytes, frames.start, frames.end) {
                    return Err(Corrupt {
                        batch: at,
                        error: BatchError::Unframed,
                        frame: Some(frame),
                        why: NotTorn::Whole,
                    });
                }
                at = frames.end;
            }
            Err(_) if tail != Tail::Recorded && bytes[at..].iter().all(|&b| b == 0) => {
                return Ok(End::Zeros { offset: at })
            }
            Err(error) => return classify(bytes, at, error, salt, tail == Tail::Newest),
        }
    }
    Ok(End::Clean)
}

fn classify(
    bytes: &[u8],
    at: usize,
    error: BatchError,
    salt: u64,
    newest: bool,
) -> Result<End, Corrupt> {
    let header = Header::parse(bytes, at, salt).ok();
    let why = if !newest {
        NotTorn::NotNewest
    } else {
        let after = match header {
            Some(header) => usize::try_from(header.end(at)).unwrap_or(usize::MAX),
            None => at + 1,
        };
        match batch::next_good_header(bytes, after, salt) {
            None => return Ok(End::Torn { offset: at, error }),
            Some(offset) => NotTorn::BatchFollows { offset },
        }
    };
    let frame = header.and_then(|header| {
        let end = usize::try_from(header.end(at)).map_or(bytes.len(), |end| end.min(bytes.len()));
        fill(bytes, at + batch::HEADER_BYTES, end).err()
    });
    Err(Corrupt {
        batch: at,
        error,
        frame,
        why,
    })
}

/// Checks that good frames fill `bytes[from..until]` exactly; the first that does not, and why.
fn fill(bytes: &[u8], from: usize, until: usize) -> Result<(), (usize, FrameError)> {
    let bytes = &bytes[..until];
    let mut at = from;
    while at < until {
        match frame::decode(&bytes[at..]) {
            Ok(frame) => at += frame.frame_len(),
            Err(error) => return Err((at, error)),
        }
    }
    Ok(())
}

/// The frames of the good batches of `bytes[from..until]`, which [`scan`] has checked: their
/// offsets, kinds and bodies, without computing a CRC again.
pub fn frames(bytes: &[u8], from: usize, until: usize) -> impl Iterator<Item = (usize, Frame<'_>)> {
    let bytes = &bytes[..until];
    let mut at = from;
    let mut batch_end = from;
    std::iter::from_fn(move || {
        // Past the headers of the batches that end here (an empty batch is only a header).
        while at == batch_end {
            if at == bytes.len() {
                return None;
            }
            batch_end = at + batch::HEADER_BYTES + batch::frames_len_unchecked(&bytes[at..]);
            at += batch::HEADER_BYTES;
        }
        let header = frame::Header::parse(&bytes[at..]).expect("scan checked this frame");
        let frame = Frame {
            kind: header.kind,
            body: &bytes[at + HEADER_BYTES..at + header.frame_len()],
        };
        let offset = at;
        at += header.frame_len();
        Some((offset, frame))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;

    const SALT: u64 = 0x5A17;

    /// Batches of frames (one slice of bodies each, kinds by position in the batch) as a
    /// segment's bytes after `from` bytes of header room, and each batch's offset.
    fn batches_of(from: usize, batches: &[&[&[u8]]]) -> (Vec<u8>, Vec<usize>) {
        let mut out = vec![0; from];
        let mut offsets = Vec::new();
        for bodies in batches {
            let mut batch = Batch::new();
            for (kind, body) in bodies.iter().enumerate() {
                frame::encode(batch.frames_out(), kind as u8, |b| {
                    b.extend_from_slice(body)
                });
            }
            offsets.push(out.len());
            let sealed = batch.seal(SALT, out.len() as u64).to_vec();
            out.extend_from_slice(&sealed);
        }
        (out, offsets)
    }

    fn read(bytes: &[u8], until: usize) -> Vec<(usize, u8, &[u8])> {
        frames(bytes, 0, until)
            .map(|(offset, f)| (offset, f.kind, f.body))
            .collect()
    }

    /// Proves good batches scan clean and hand out their frames, past the batch headers and
    /// an empty batch.
    #[test]
    fn good_batches_end_clean_and_read_back() {
        let (bytes, offsets) = batches_of(0, &[&[b"one", b""], &[], &[b"three"]]);
        assert_eq!(scan(&bytes, 0, SALT, Tail::Newest), Ok(End::Clean));
        assert_eq!(scan(&bytes, 0, SALT, Tail::Recorded), Ok(End::Clean));
        assert_eq!(
            scan(&bytes, bytes.len(), SALT, Tail::Recorded),
            Ok(End::Clean)
        );
        let h = batch::HEADER_BYTES;
        assert_eq!(offsets, [0, h + 23, 2 * h + 23]);
        assert_eq!(
            read(&bytes, bytes.len()),
            [
                (h, 0, &b"one"[..]),
                (h + 13, 1, &b""[..]),
                (3 * h + 23, 0, &b"three"[..])
            ]
        );
    }

    /// Proves the zeros after a prewritten segment's batches end it in the newest segment,
    /// wherever they begin at a batch boundary (a last batch whose write left only zeros
    /// included), and in an older one whose end is not recorded; and are corruption before
    /// the end the next segment's header records.
    #[test]
    fn zeros_after_the_batches_end_a_segment_whose_end_is_not_recorded() {
        let (bytes, offsets) = batches_of(0, &[&[b"kept"], &[b"last", b"batch"]]);
        let mut prewritten = bytes.clone();
        prewritten.resize(bytes.len() + 4096, 0);
        let end = scan(&prewritten, 0, SALT, Tail::Newest);
        assert_eq!(
            end,
            Ok(End::Zeros {
                offset: bytes.len()
            })
        );
        assert_eq!(end.unwrap().good_until(prewritten.len()), bytes.len());
        let mut unwritten = prewritten.clone();
        unwritten[offsets[1]..].fill(0);
        assert_eq!(
            scan(&unwritten, 0, SALT, Tail::Newest),
            Ok(End::Zeros { offset: offsets[1] })
        );
        assert_eq!(
            scan(&prewritten, 0, SALT, Tail::Left),
            Ok(End::Zeros {
                offset: bytes.len()
            })
        );
        let older = scan(&prewritten, 0, SALT, Tail::Recorded).unwrap_err();
        assert_eq!((older.batch, older.why), (bytes.len(), NotTorn::NotNewest));
    }

    /// Proves a cut-off last batch is a torn tail in the newest segment and corruption in any
    /// other, at every cut, and that the batches before it are the good ones.
    #[test]
    fn a_cut_last_batch_is_torn_only_in_the_newest_segment() {
        let (bytes, offsets) = batches_of(0, &[&[b"kept"], &[b"cut off", b"somewhere"]]);
        let last = offsets[1];
        for cut in last + 1..bytes.len() {
            let end = scan(&bytes[..cut], 0, SALT, Tail::Newest).unwrap();
            let End::Torn { offset, error } = end else {
                panic!("cut at {cut}: {end:?}");
            };
            assert_eq!(offset, last, "cut at {cut}");
            let short = matches!(error, BatchError::Short | BatchError::Cut { .. });
            assert!(short, "cut at {cut}: {error:?}");
            assert_eq!(end.good_until(cut), last);
            assert_eq!(read(&bytes[..cut], last).len(), 1);
            for older in [Tail::Recorded, Tail::Left] {
                let corrupt = scan(&bytes[..cut], 0, SALT, older).unwrap_err();
                assert_eq!((corrupt.batch, corrupt.why), (last, NotTorn::NotNewest));
            }
        }
    }

    /// Proves the case a power cut makes that per-frame checks could not tell from corruption:
    /// a hole (zeros, or old bytes) in the middle of the last batch with good frames after it,
    /// inside the batch, is a torn tail cut at the batch's start. The same hole in a batch that
    /// another follows is corruption, at the first frame the hole hit.
    #[test]
    fn a_hole_in_the_last_batch_is_torn_and_before_another_is_corruption() {
        let big = [0x42; 3000];
        let last: &[&[u8]] = &[b"before the hole", &big, b"after the hole, a good frame"];
        let (bytes, offsets) = batches_of(0, &[&[b"kept"], last]);
        let hole = offsets[1] + 100..offsets[1] + 1100;
        let after = bytes.len() - (frame::HEADER_BYTES + 28);
        assert!(frame::decode(&bytes[after..]).is_ok());
        for fill in [0x00, 0xD5, 0xBA] {
            let mut torn = bytes.clone();
            torn[hole.clone()].fill(fill);
            assert_eq!(frame::decode(&torn[after..]).map(|f| f.kind), Ok(2));
            let end = scan(&torn, 0, SALT, Tail::Newest).unwrap();
            let End::Torn { offset, error } = end else {
                panic!("{end:?}");
            };
            assert_eq!(offset, offsets[1]);
            assert!(matches!(error, BatchError::BadCrc { .. }), "{error:?}");

            let (next, _) = batches_of(torn.len(), &[&[b"a later batch"]]);
            let mut followed = torn.clone();
            followed.extend_from_slice(&next[torn.len()..]);
            let corrupt = scan(&followed, 0, SALT, Tail::Newest).unwrap_err();
            assert_eq!(corrupt.batch, offsets[1]);
            assert!(matches!(corrupt.error, BatchError::BadCrc { .. }));
            let second_frame = offsets[1] + batch::HEADER_BYTES + frame::HEADER_BYTES + 15;
            assert_eq!(corrupt.offset(), second_frame);
            assert!(matches!(
                corrupt.frame,
                Some((_, FrameError::BadCrc { .. }))
            ));
            assert_eq!(corrupt.why, NotTorn::BatchFollows { offset: torn.len() });
        }
    }

    /// Proves a last batch whose header a hole hit is torn, however its frames look after it,
    /// and that a good batch header anywhere after a torn header makes it corruption.
    #[test]
    fn a_torn_batch_header() {
        let (bytes, offsets) = batches_of(0, &[&[b"kept"], &[b"first", b"second", b"third"]]);
        let last = offsets[1];
        for at in last..last + batch::HEADER_BYTES {
            let mut torn = bytes.clone();
            torn[at] ^= 0x20;
            let end = scan(&torn, 0, SALT, Tail::Newest).unwrap();
            let End::Torn { offset, error } = end else {
                panic!("byte {at}: {end:?}");
            };
            assert_eq!(offset, last, "byte {at}");
            let bad = matches!(
                error,
                BatchError::BadMagic { .. } | BatchError::BadHeaderCrc
            );
            assert!(bad, "byte {at}: {error:?}");
        }
        let mut torn = bytes.clone();
        torn[last..last + batch::HEADER_BYTES].fill(0);
        let (next, _) = batches_of(torn.len(), &[&[b"later"]]);
        torn.extend_from_slice(&next[torn.len()..]);
        let corrupt = scan(&torn, 0, SALT, Tail::Newest).unwrap_err();
        assert_eq!(
            (corrupt.batch, corrupt.offset(), corrupt.frame),
            (last, last, None)
        );
        assert_eq!(
            corrupt.why,
            NotTorn::BatchFollows {
                offset: bytes.len()
            }
        );
    }

    /// Proves a batch of another segment (another salt) or copied from another offset, whole
    /// and with good CRCs, is neither read nor taken as proof that a later batch was written.
    #[test]
    fn old_bytes_are_not_a_batch() {
        let (bytes, offsets) = batches_of(0, &[&[b"kept"], &[b"the last batch"]]);
        let (stale, _) = batches_of(offsets[1], &[&[b"another segment's batch"]]);
        let mut other_salt = stale.clone();
        let h = offsets[1];
        other_salt[h..h + batch::HEADER_BYTES].copy_from_slice(&batch::header(
            SALT + 1,
            h as u64,
            &stale[h + 33..],
        ));
        let mut torn = bytes[..h].to_vec();
        torn.extend_from_slice(&other_salt[h..]);
        assert_eq!(
            scan(&torn, 0, SALT, Tail::Newest),
            Ok(End::Torn {
                offset: h,
                error: BatchError::WrongSalt { found: SALT + 1 }
            })
        );

        // A whole batch of this segment moved by one byte, after a hole.
        let mut moved = bytes.clone();
        moved[h..].fill(0);
        moved.push(0);
        moved[h + 1..].copy_from_slice(&bytes[h..]);
        assert!(matches!(
            scan(&moved, 0, SALT, Tail::Newest),
            Ok(End::Torn { offset, error: BatchError::BadMagic { found: 0 } }) if offset == h
        ));
    }

    /// Proves a batch whose CRC matches but whose frames do not fill it is corruption even as
    /// the newest segment's last: it was written whole, and acknowledged.
    #[test]
    fn a_whole_batch_of_bad_frames_is_corruption() {
        let mut batch = Batch::new();
        frame::encode(batch.frames_out(), 1, |b| b.extend_from_slice(b"good"));
        batch.frames_out().extend_from_slice(b"not a frame");
        let bytes = batch.seal(SALT, 0).to_vec();
        let corrupt = scan(&bytes, 0, SALT, Tail::Newest).unwrap_err();
        assert_eq!(
            (corrupt.error, corrupt.why),
            (BatchError::Unframed, NotTorn::Whole)
        );
        assert_eq!(corrupt.offset(), batch::HEADER_BYTES + 14);
    }
}
