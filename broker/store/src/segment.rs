//! Segment files: where a shard's batches of frames live, and the header each file begins with.
//!
//! Shard n's journal is `<data dir>/shard-<n>/<sequence>.seg`, one file after another; the
//! sequence is zero-padded to 20 digits (all of `u64`) so that names sort as the sequence does.
//!
//! ```text
//! offset  size  field
//!      0     4  SEGMENT_MAGIC, "ISEG"
//!      4     2  FORMAT_VERSION, u16 little-endian
//!      6     2  shard, u16 little-endian
//!      8     2  shard count when the file was written, u16 little-endian
//!     10     8  sequence, u64 little-endian (the same as in the file name)
//!     18     8  salt, u64 little-endian: random, repeated in every batch header (batch.rs)
//!     26     8  previous end, u64 little-endian: where the batches of the shard's previous
//!               segment end (its length, less the zeros it was prewritten with); 0 in a
//!               segment the writer began first
//!     34     4  CRC-32C of bytes 0 .. 34, u32 little-endian
//!     38        batches (batch.rs), each a header and frames (frame.rs)
//! ```
//!
//! The previous end is what lets a writer leave a prewritten segment for the next without
//! cutting its zeros off first (`writer.rs`): the reader reads the older segment up to there,
//! and damage there is still damage.
//!
//! The magic and the version come first and are read before anything else, so that a segment
//! of another format is named as such, whatever its length.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The size at which a writer closes a segment and begins the next (`writer.rs`). A shard's
/// journal is compacted by removing whole segments, and the reader holds one segment in memory
/// at a time, so this is the unit of both. At 64 MiB a gigabyte of live state is 16 files per
/// shard (not thousands), a compaction frees space in 64 MiB steps, recovery holds at most
/// 64 MiB per shard it reads, and a segment reads back in well under a second. etcd's write-ahead
/// log settled on the same size. A batch is never split, so a segment grows past this only by
/// the one batch that crossed it.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

pub const SEGMENT_MAGIC: [u8; 4] = *b"ISEG";

/// Bumped when the layout of segments, batches or frames changes; a reader refuses versions it
/// does not know. Version 1 had no batch headers, version 2 no previous end; no release
/// shipped with either, so nothing written in them is read.
pub const FORMAT_VERSION: u16 = 3;

pub const SEGMENT_HEADER_BYTES: usize = 38;

/// Where the header holds the previous segment's end: where a reader says it is damaged.
pub const PREVIOUS_END_AT: usize = 26;

/// Magic and version: what is read before the rest of the header.
const VERSION_END: usize = 6;
const CRC_AT: usize = 34;

const SEGMENT_SUFFIX: &str = ".seg";
const SEQUENCE_DIGITS: usize = 20;
const SHARD_PREFIX: &str = "shard-";

const _: () = assert!(u64::MAX.ilog10() as usize + 1 == SEQUENCE_DIGITS);
const _: () = assert!(SEGMENT_BYTES > SEGMENT_HEADER_BYTES as u64);

/// What a segment says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard: u16,
    /// How many shards the broker ran when it wrote the file. Sessions are placed by the shard
    /// count of the current run (`docs/store.md`, "Recovery"); this one is for the logs.
    pub shard_count: u16,
    pub sequence: u64,
    /// Random, per segment: a batch header is good only with its segment's salt (`batch.rs`).
    pub salt: u64,
    /// Where the batches of the shard's previous segment end; 0 when the writer began this
    /// segment first.
    pub previous_end: u64,
}

/// Why the start of a segment file is not a good header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file is shorter than a segment header ({SEGMENT_HEADER_BYTES} bytes)")]
    Short,
    #[error("not a segment: the file does not begin with \"ISEG\"")]
    BadMagic,
    #[error(
        "segment format version {found}, written by another version of ironsight; this one \
         reads version {FORMAT_VERSION} only"
    )]
    UnsupportedVersion { found: u16 },
    #[error("CRC-32C mismatch in the segment header")]
    BadCrc,
    #[error("the header names shard {shard} of {shard_count}")]
    ShardOutOfRange { shard: u16, shard_count: u16 },
    #[error("the header names shard {found}, but the file is in shard {expected}'s directory")]
    WrongShard { found: u16, expected: u16 },
    #[error("the header names sequence {found}, but the file name says {expected}")]
    WrongSequence { found: u64, expected: u64 },
}

impl SegmentHeader {
    /// The header of a shard's first segment, with a salt of its own. Not a secret, only
    /// different from every other segment's: std's `RandomState` is seeded from the system's
    /// randomness (and changes at every call), and the time goes in too.
    pub fn new(shard: u16, shard_count: u16, sequence: u64) -> SegmentHeader {
        let salt = RandomState::new().hash_one((SystemTime::now(), shard, sequence));
        SegmentHeader {
            shard,
            shard_count,
            sequence,
            salt,
            previous_end: 0,
        }
    }

    /// The header of the segment after this one, whose batches end at `end`.
    pub fn next(&self, end: u64) -> SegmentHeader {
        SegmentHeader {
            previous_end: end,
            ..SegmentHeader::new(self.shard, self.shard_count, self.sequence + 1)
        }
    }

    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        assert!(self.shard < self.shard_count, "{self:?}");
        let mut out = [0; SEGMENT_HEADER_BYTES];
        out[0..4].copy_from_slice(&SEGMENT_MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.shard.to_le_bytes());
        out[8..10].copy_from_slice(&self.shard_count.to_le_bytes());
        out[10..18].copy_from_slice(&self.sequence.to_le_bytes());
        out[18..26].copy_from_slice(&self.salt.to_le_bytes());
        out[PREVIOUS_END_AT..CRC_AT].copy_from_slice(&self.previous_end.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the header at the start of a segment file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(start) = bytes.get(..VERSION_END) else {
            return Err(HeaderError::Short);
        };
        if start[0..4] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([start[4], start[5]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion { found: version });
        }
        let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(HeaderError::Short);
        };
        let field = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        let u64_at = |at: usize| {
            let mut field = [0; 8];
            field.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(field)
        };
        let mut crc = [0; 4];
        crc.copy_from_slice(&header[CRC_AT..]);
        if crc32c::crc32c(&header[..CRC_AT]) != u32::from_le_bytes(crc) {
            return Err(HeaderError::BadCrc);
        }
        let decoded = SegmentHeader {
            shard: field(6),
            shard_count: field(8),
            sequence: u64_at(10),
            salt: u64_at(18),
            previous_end: u64_at(PREVIOUS_END_AT),
        };
        if decoded.shard >= decoded.shard_count {
            return Err(HeaderError::ShardOutOfRange {
                shard: decoded.shard,
                shard_count: decoded.shard_count,
            });
        }
        Ok(decoded)
    }

    /// Checks the header against where the file lies: its shard directory and its name.
    pub fn check_place(&self, shard: u16, sequence: u64) -> Result<(), HeaderError> {
        if self.shard != shard {
            return Err(HeaderError::WrongShard {
                found: self.shard,
                expected: shard,
            });
        }
        if self.sequence != sequence {
            return Err(HeaderError::WrongSequence {
                found: self.sequence,
                expected: sequence,
            });
        }
        Ok(())
    }
}

/// `<data dir>/shard-<n>`.
pub fn shard_dir(data_dir: &Path, shard: u16) -> PathBuf {
    data_dir.join(format!("{SHARD_PREFIX}{shard}"))
}

/// The shard a directory name stands for: `shard-<n>`, written as [`shard_dir`] writes it
/// (`shard-01` is not shard 1: two names for one shard would be two journals for it).
pub fn parse_shard_dir_name(name: &str) -> Option<u16> {
    let shard: u16 = name.strip_prefix(SHARD_PREFIX)?.parse().ok()?;
    (name.len() == SHARD_PREFIX.len() + shard.to_string().len()).then_some(shard)
}

/// `<sequence, 20 digits>.seg`.
pub fn segment_file_name(sequence: u64) -> String {
    format!("{sequence:0SEQUENCE_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The sequence a segment file name stands for, if it is one as [`segment_file_name`] writes it.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a file name is meant as a segment (ends in `.seg`), well formed or not: the reader
/// refuses a malformed one rather than skip part of a journal.
pub fn looks_like_segment(name: &str) -> bool {
    name.ends_with(SEGMENT_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header, field by field: shard 2 of 4, sequence 7, salt 0x0123456789abcdef, the
    /// previous segment's batches ending at 0x4000_0123.
    #[test]
    fn a_header_spelled_out() {
        let header = SegmentHeader {
            shard: 2,
            shard_count: 4,
            sequence: 7,
            salt: 0x0123_4567_89AB_CDEF,
            previous_end: 0x4000_0123,
        };
        let bytes = header.encode();
        let expected = [
            b'I', b'S', b'E', b'G', //                        magic
            0x03, 0x00, //                                    format version 3
            0x02, 0x00, //                                    shard 2
            0x04, 0x00, //                                    of 4 shards
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sequence 7
            0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, // salt
            0x23, 0x01, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, // previous end 0x4000_0123
            0x9E, 0x3F, 0x4C, 0x27, //                        CRC-32C of the above
        ];
        assert_eq!(bytes, expected);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    }

    /// Proves each way a header can be bad is told apart, and that a header is checked
    /// against the directory and file name it was found under.
    #[test]
    fn bad_headers_are_named() {
        let good = SegmentHeader::new(1, 2, 9).encode();
        assert_eq!(
            SegmentHeader::decode(&good[..SEGMENT_HEADER_BYTES - 1]),
            Err(HeaderError::Short)
        );
        assert_eq!(SegmentHeader::decode(&good[..5]), Err(HeaderError::Short));

        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadMagic));

        let mut bad = good;
        bad[4] = 4;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(HeaderError::UnsupportedVersion { found: 4 })
        );

        for at in 6..SEGMENT_HEADER_BYTES {
            let mut bad = good;
            bad[at] ^= 0x10;
            assert_eq!(
                SegmentHeader::decode(&bad),
                Err(HeaderError::BadCrc),
                "byte {at}"
            );
        }

        let mut bad = good;
        bad[6..8].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32c::crc32c(&bad[..CRC_AT]);
        bad[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(HeaderError::ShardOutOfRange {
                shard: 2,
                shard_count: 2
            })
        );

        let header = SegmentHeader::decode(&good).unwrap();
        assert_eq!(header.check_place(1, 9), Ok(()));
        assert_eq!(
            header.check_place(0, 9),
            Err(HeaderError::WrongShard {
                found: 1,
                expected: 0
            })
        );
        assert_eq!(
            header.check_place(1, 8),
            Err(HeaderError::WrongSequence {
                found: 9,
                expected: 8
            })
        );
    }

    /// Proves a segment of format version 1 (22 bytes of header, no salt, no batches) is named
    /// by its version, not taken for a short or damaged header: the store never shipped with
    /// it, and a segment written by it is refused.
    #[test]
    fn a_version_1_segment_is_refused_by_its_version() {
        let version_1 = [
            b'I', b'S', b'E', b'G', //                        magic
            0x01, 0x00, //                                    format version 1
            0x00, 0x00, 0x01, 0x00, //                        shard 0 of 1
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sequence 0
            0x12, 0x34, 0x56, 0x78, //                        its CRC (not read)
        ];
        for len in [6, version_1.len()] {
            assert_eq!(
                SegmentHeader::decode(&version_1[..len]),
                Err(HeaderError::UnsupportedVersion { found: 1 })
            );
        }
    }

    /// Proves every new header gets a salt of its own.
    #[test]
    fn salts_differ() {
        let salts: std::collections::HashSet<u64> = (0..1000)
            .map(|_| SegmentHeader::new(0, 1, 0).salt)
            .collect();
        assert_eq!(salts.len(), 1000);
    }

    /// Proves names sort as sequences do and parse back, and that near-misses are refused.
    #[test]
    fn names_sort_as_sequences_do() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        let sequences = [0, 9, 10, 99, 100, 12_345, u64::MAX];
        let names: Vec<String> = sequences.iter().map(|&s| segment_file_name(s)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        for (name, sequence) in names.iter().zip(sequences) {
            assert_eq!(parse_segment_file_name(name), Some(sequence));
            assert!(looks_like_segment(name));
        }
        for bad in [
            "7.seg",
            "0000000000000000007.seg",
            "000000000000000000007.seg",
            "0000000000000000000a.seg",
            "+0000000000000000007.seg",
            "99999999999999999999.seg",
            "00000000000000000007.seg.tmp",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        assert!(!looks_like_segment("LOCK"));
    }

    #[test]
    fn shard_directories_have_one_name_each() {
        assert_eq!(shard_dir(Path::new("/d"), 12), Path::new("/d/shard-12"));
        assert_eq!(parse_shard_dir_name("shard-12"), Some(12));
        assert_eq!(parse_shard_dir_name("shard-0"), Some(0));
        for bad in [
            "shard-01",
            "shard-",
            "shard-+1",
            "shard-70000",
            "shards-1",
            "shard-1x",
        ] {
            assert_eq!(parse_shard_dir_name(bad), None, "{bad}");
        }
    }
}
