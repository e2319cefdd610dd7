//! Reads arbitrary bytes as a segment file, decodes the records of its frames (the record codec
//! must refuse what it cannot read, never panic), and checks what the reader says about them
//! against the bytes, the slow way: the frames it hands out are exactly those of the good
//! batches before the first bad one, at their offsets; a torn tail is the newest segment's and
//! has no good batch header after it (checked at every offset), and cutting it off leaves a
//! segment that reads clean with the same frames; corruption names the first bad batch, and a
//! good batch header where it says one follows; an older segment is never torn; zeros after the
//! good batches end the newest segment cleanly (a prewritten one), and an older one whose end
//! the next segment's header does not record, but never one cut at its recorded end.
//!
//! The first input byte says what may follow the segment's batches (`scan::Tail`), whether a
//! good header goes before the rest (so that most runs reach the batches), whether the rest is
//! raw bytes or a recipe: good batches of good frames (random CRCs are hopeless for a fuzzer to
//! match), then one byte flipped, a hole of zeros and the end cut off, which is what disks and
//! power cuts do to a segment; and whether zeros follow, as in a prewritten segment. Which
//! tail a segment gets from the next one's header (`reader::read_shard`) is tested in
//! `reader.rs`, not here.
//!
//! Run: `cd broker/store/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run read -- -max_total_time=60`

#![no_main]

use std::path::Path;

use ironsight_core::recovery::Recovery;
use ironsight_store::batch::{self, Batch, Header};
use ironsight_store::frame;
use ironsight_store::reader::{read_segment, Damage, Place, ReadError, SegmentRead, Tear};
use ironsight_store::records::{Clock, RecordDecoder};
use ironsight_store::scan::{NotTorn, Tail};
use ironsight_store::segment::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

const SHARD: u16 = 0;
const SEQUENCE: u64 = 1;
const SALT: u64 = 0x5A17_5A17;
/// A hole is up to 255 of these: up to a page, about.
const HOLE_UNIT: usize = 16;
/// The zeros after the batches of a prewritten segment, in the runs that have them.
const PREWRITTEN_ZEROS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tail = match (mode & 1, mode & 16) {
        (1, _) => Tail::Newest,
        (_, 0) => Tail::Recorded,
        _ => Tail::Left,
    };
    let mut bytes = Vec::new();
    if mode & 2 == 0 {
        let header = SegmentHeader {
            shard: SHARD,
            shard_count: 1,
            sequence: SEQUENCE,
            salt: SALT,
            previous_end: 0,
        };
        bytes.extend_from_slice(&header.encode());
    }
    if mode & 4 == 0 {
        bytes.extend_from_slice(rest);
    } else {
        cook(rest, &mut bytes);
    }
    if mode & 8 != 0 {
        bytes.resize(bytes.len() + PREWRITTEN_ZEROS, 0);
    }
    check(&bytes, tail);
});

/// Appends the batches of a recipe, then damages them: `flip at (u16), flip with (u8), hole
/// at (u16), hole length in HOLE_UNITs (u8), cut (u16)`, then frames as `kind, body length
/// (u8), body`; a kind with its high bit set ends a batch after its frame.
fn cook(recipe: &[u8], bytes: &mut Vec<u8>) {
    let Some((damage, mut rest)) = recipe.split_first_chunk::<8>() else {
        return;
    };
    let start = bytes.len();
    let mut batch = Batch::new();
    while let [kind, len, body @ ..] = rest {
        let len = (*len as usize).min(body.len());
        frame::encode(batch.frames_out(), *kind, |b| b.extend_from_slice(&body[..len]));
        rest = &body[len..];
        if kind & 0x80 != 0 || rest.len() < 2 {
            let sealed = batch.seal(SALT, bytes.len() as u64);
            bytes.extend_from_slice(sealed);
            batch.clear();
        }
    }
    let written = bytes.len() - start;
    if written == 0 {
        return;
    }
    let field = |at: usize| u16::from_le_bytes([damage[at], damage[at + 1]]) as usize;
    bytes[start + field(0) % written] ^= damage[2];
    let hole_at = start + field(3) % written;
    let hole_end = (hole_at + damage[5] as usize * HOLE_UNIT).min(bytes.len());
    bytes[hole_at..hole_end].fill(0);
    let cut = field(6) % (written + 1);
    bytes.truncate(bytes.len() - cut);
}

type Frames = Vec<(u64, u8, Vec<u8>)>;

/// (offset, kind, body) of every frame handed out, and what the read said.
fn read(bytes: &[u8], tail: Tail) -> (Frames, Result<SegmentRead, ReadError>) {
    let place = Place {
        file: Path::new("fuzz.seg"),
        shard: SHARD,
        sequence: SEQUENCE,
        tail,
    };
    let mut frames = Vec::new();
    let result = read_segment(place, bytes, |f| {
        frames.push((f.offset, f.kind, f.body.to_vec()));
        Ok::<(), ReadError>(())
    });
    (frames, result)
}

/// Every frame handed out goes through the record codec too, as at start: a body the codec
/// cannot read is an error, never a panic, and whatever it read folds into sessions.
fn decode_records(frames: &Frames) {
    let mut decoder = RecordDecoder::new(Clock::now());
    let mut recovery = Recovery::default();
    for (_, kind, body) in frames {
        let _ = decoder.apply(*kind, body, &mut recovery);
    }
    let _ = recovery.finish();
}

/// The frames of the good batches from the segment header on, walked one by one without the
/// reader's code, and where the first batch that is not good (or not filled with good frames)
/// begins.
fn good_batches(bytes: &[u8], salt: u64) -> (Frames, usize) {
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at < bytes.len() {
        let Ok(range) = batch::check(bytes, at, salt) else {
            break;
        };
        let mut inner = Vec::new();
        let mut q = range.start;
        while q < range.end {
            let Ok(f) = frame::decode(&bytes[q..range.end]) else {
                break;
            };
            inner.push((q as u64, f.kind, f.body.to_vec()));
            q += f.frame_len();
        }
        if q != range.end {
            break;
        }
        frames.extend(inner);
        at = range.end;
    }
    (frames, at)
}

fn check(bytes: &[u8], tail: Tail) {
    let newest = tail == Tail::Newest;
    let (frames, result) = read(bytes, tail);
    decode_records(&frames);
    match result {
        Ok(segment) => {
            assert_eq!(segment.frames, frames.len() as u64);
            let Some(header) = segment.header else {
                assert!(newest, "only the newest segment is torn");
                assert_eq!(segment.torn.map(|t| t.tear), Some(Tear::Header));
                assert!(frames.is_empty());
                assert!(bytes.len() <= SEGMENT_HEADER_BYTES);
                return;
            };
            let (expected, first_bad) = good_batches(bytes, header.salt);
            assert_eq!(frames, expected, "the frames of the good batches, in order");
            match &segment.torn {
                None if first_bad < bytes.len() => {
                    assert_ne!(tail, Tail::Recorded, "zeros before the recorded end");
                    assert!(
                        bytes[first_bad..].iter().all(|&b| b == 0),
                        "a clean segment is all batches, then only zeros"
                    );
                }
                None => {}
                Some(torn) => {
                    assert!(newest, "only the newest segment is torn");
                    let offset = torn.offset as usize;
                    assert_eq!(offset, first_bad, "the tail begins at the first bad batch");
                    let after = match Header::parse(bytes, offset, header.salt) {
                        Ok(h) => usize::try_from(h.end(offset)).unwrap_or(usize::MAX),
                        Err(_) => offset + 1,
                    };
                    assert!(
                        (after..bytes.len()).all(|q| Header::parse(bytes, q, header.salt).is_err()),
                        "a good batch header after a torn tail at {offset}"
                    );
                    let (again, cut) = read(&bytes[..offset], tail);
                    assert_eq!(again, frames, "the cut segment reads the same frames");
                    assert_eq!(cut.expect("the cut segment reads clean").torn, None);
                }
            }
        }
        Err(ReadError::Corrupt(c)) => {
            assert!(
                frames.is_empty(),
                "corruption is found before any frame is handed out"
            );
            match c.damage {
                Damage::Batch { batch, why, .. } => {
                    let salt = SegmentHeader::decode(bytes).expect("a good header").salt;
                    let (_, first_bad) = good_batches(bytes, salt);
                    assert_eq!(batch as usize, first_bad, "the first bad batch");
                    assert!(c.offset >= batch && c.offset < bytes.len() as u64);
                    match why {
                        NotTorn::NotNewest => assert!(!newest),
                        NotTorn::BatchFollows { offset } => {
                            assert!(newest && offset as u64 > batch);
                            assert!(Header::parse(bytes, offset, salt).is_ok());
                        }
                        NotTorn::Whole => {
                            assert!(batch::check(bytes, batch as usize, salt).is_ok())
                        }
                    }
                }
                Damage::Header(_) => assert_eq!(c.offset, 0),
                Damage::Gap { .. } | Damage::PreviousEnd { .. } => {
                    panic!("one segment has neither a gap nor a next one")
                }
            }
        }
        Err(ReadError::Format { .. }) => {
            assert_ne!(bytes[4..6], FORMAT_VERSION.to_le_bytes());
        }
        Err(other) => panic!("{other}"),
    }
}
