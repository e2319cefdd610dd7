//! Reads arbitrary bytes as a segment file, decodes the records of its frames (the record codec
//! must refuse what it cannot read, never panic), and checks what the reader says about them against
//! the frames themselves: every frame it hands out decodes at its offset, back to back from the
//! header on; a torn tail has no good frame anywhere after it (checked by trying every offset,
//! the slow way the resync avoids), and cutting it off leaves a segment that reads clean with
//! the same frames; corruption that says a good frame follows has one there, and an older
//! segment is never torn.
//!
//! The first input byte says whether the segment is the shard's newest, whether a good header
//! goes before the rest (so that most runs reach the frames), and whether the rest is raw bytes
//! or a recipe: good frames (random CRCs are hopeless for a fuzzer to match) with one byte
//! flipped and the end cut off, which is what disks and crashes do to a segment.
//!
//! Run: `cd broker/store/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run read -- -max_total_time=60`

#![no_main]

use std::path::Path;

use ironsight_core::recovery::Recovery;
use ironsight_store::frame;
use ironsight_store::reader::{read_segment, Damage, Place, ReadError, SegmentRead, Tear};
use ironsight_store::records::{Clock, RecordDecoder};
use ironsight_store::scan::NotTorn;
use ironsight_store::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

const SHARD: u16 = 0;
const SEQUENCE: u64 = 1;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let newest = mode & 1 == 1;
    let mut bytes = Vec::new();
    if mode & 2 == 0 {
        let header = SegmentHeader {
            shard: SHARD,
            shard_count: 1,
            sequence: SEQUENCE,
        };
        bytes.extend_from_slice(&header.encode());
    }
    if mode & 4 == 0 {
        bytes.extend_from_slice(rest);
    } else {
        cook(rest, &mut bytes);
    }
    check(&bytes, newest);
});

/// Appends the frames of a recipe, then damages them: `flip at (u16), flip with (u8), cut
/// (u16)`, then frames as `kind, body length (u8), body`.
fn cook(recipe: &[u8], bytes: &mut Vec<u8>) {
    let Some((damage, mut rest)) = recipe.split_first_chunk::<5>() else {
        return;
    };
    let start = bytes.len();
    while let [kind, len, body @ ..] = rest {
        let len = (*len as usize).min(body.len());
        frame::encode(bytes, *kind, |b| b.extend_from_slice(&body[..len]));
        rest = &body[len..];
    }
    let written = bytes.len() - start;
    if written == 0 {
        return;
    }
    let flip_at = u16::from_le_bytes([damage[0], damage[1]]) as usize % written;
    bytes[start + flip_at] ^= damage[2];
    let cut = u16::from_le_bytes([damage[3], damage[4]]) as usize % (written + 1);
    bytes.truncate(bytes.len() - cut);
}

/// (offset, kind, body) of every frame handed out, and what the read said.
fn read(bytes: &[u8], newest: bool) -> (Vec<(u64, u8, Vec<u8>)>, Result<SegmentRead, ReadError>) {
    let place = Place {
        file: Path::new("fuzz.seg"),
        shard: SHARD,
        sequence: SEQUENCE,
        newest,
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
fn decode_records(frames: &[(u64, u8, Vec<u8>)]) {
    let mut decoder = RecordDecoder::new(Clock::now());
    let mut recovery = Recovery::default();
    for (_, kind, body) in frames {
        let _ = decoder.apply(*kind, body, &mut recovery);
    }
    let _ = recovery.finish();
}

fn check(bytes: &[u8], newest: bool) {
    let (frames, result) = read(bytes, newest);
    decode_records(&frames);
    let mut at = SEGMENT_HEADER_BYTES as u64;
    for (offset, kind, body) in &frames {
        assert_eq!(*offset, at, "frames back to back");
        let decoded = frame::decode(&bytes[at as usize..]).expect("a frame handed out decodes");
        assert_eq!((decoded.kind, decoded.body), (*kind, body.as_slice()));
        at += decoded.frame_len() as u64;
    }
    match result {
        Ok(segment) => {
            assert_eq!(segment.frames, frames.len() as u64);
            match &segment.torn {
                None => assert_eq!(at, bytes.len() as u64, "a clean segment is all frames"),
                Some(torn) => {
                    assert!(newest, "only the newest segment is torn");
                    if torn.tear == Tear::Header {
                        assert!(segment.header.is_none() && frames.is_empty());
                        assert!(bytes.len() < SEGMENT_HEADER_BYTES);
                    } else {
                        assert_eq!(at, torn.offset, "the frames end where the tail begins");
                        let after = torn.offset as usize + 1;
                        assert!(
                            (after..bytes.len()).all(|q| frame::decode(&bytes[q..]).is_err()),
                            "a good frame after a torn tail at {}",
                            torn.offset
                        );
                        let (again, cut) = read(&bytes[..torn.offset as usize], newest);
                        assert_eq!(again, frames, "the cut segment reads the same frames");
                        assert_eq!(cut.expect("the cut segment reads clean").torn, None);
                    }
                }
            }
        }
        Err(ReadError::Corrupt(c)) => {
            assert!(
                frames.is_empty(),
                "corruption is found before any frame is handed out"
            );
            match c.damage {
                Damage::Frame { why, .. } => {
                    assert!(frame::decode(&bytes[c.offset as usize..]).is_err());
                    match why {
                        NotTorn::NotNewest => assert!(!newest),
                        NotTorn::GoodFrameFollows { offset } => {
                            assert!(newest && offset as u64 > c.offset);
                            assert!(frame::decode(&bytes[offset..]).is_ok());
                        }
                        NotTorn::Undecided => {}
                    }
                }
                Damage::Header(_) => assert_eq!(c.offset, 0),
                Damage::Gap { .. } => panic!("one segment has no gap"),
            }
        }
        Err(other) => panic!("{other}"),
    }
}
