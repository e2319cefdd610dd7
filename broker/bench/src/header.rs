//! The header every benchmark PUBLISH payload starts with, so a subscriber can tell which run,
//! which publisher and which message it got, and when it was sent, without any shared state.
//!
//! Layout (big-endian, 28 bytes), then zero padding up to `--payload`:
//!
//! ```text
//! magic "ISB1" | run id u32 | publisher id u32 | sequence u64 | sent CLOCK_MONOTONIC ns u64
//! ```
//!
//! Sequence numbers of messages sent in the measured window start at [`WINDOW_SEQ_BASE`]; those
//! sent during warm-up count up from 0. The publisher decides which window a message belongs to
//! when it stamps it, so a subscriber never has to guess from clocks.

use bytes::{Buf, BufMut};

/// The first four bytes of every benchmark payload.
pub const MAGIC: [u8; 4] = *b"ISB1";
/// Bytes of the header; the smallest `--payload`.
pub const HEADER_LEN: usize = 4 + 4 + 4 + 8 + 8;
/// Sequence number of the first message a publisher sends in the measured window.
pub const WINDOW_SEQ_BASE: u64 = 1 << 40;

/// Warm-up never sends as many messages as the window base leaves room for.
const _: () = assert!(WINDOW_SEQ_BASE > u32::MAX as u64);

/// The decoded header of a benchmark payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub run_id: u32,
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// What a subscriber makes of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A message of this run.
    Ours(Header),
    /// A benchmark message of another run (an earlier run, a retained leftover, a persistent
    /// session's backlog).
    OtherRun,
    /// Not a benchmark payload at all (too short or wrong magic).
    Foreign,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, mut out: &mut [u8]) {
        assert!(out.len() >= HEADER_LEN, "payload shorter than the header");
        out.put_slice(&MAGIC);
        out.put_u32(self.run_id);
        out.put_u32(self.publisher);
        out.put_u64(self.seq);
        out.put_u64(self.sent_ns);
    }

    /// Reads a payload's header and sorts it by run. Never panics on any input.
    pub fn parse(payload: &[u8], run_id: u32) -> Parsed {
        if payload.len() < HEADER_LEN || payload[..4] != MAGIC {
            return Parsed::Foreign;
        }
        let mut r = &payload[4..HEADER_LEN];
        let header = Header {
            run_id: r.get_u32(),
            publisher: r.get_u32(),
            seq: r.get_u64(),
            sent_ns: r.get_u64(),
        };
        if header.run_id == run_id {
            Parsed::Ours(header)
        } else {
            Parsed::OtherRun
        }
    }

    /// Whether the publisher stamped this message inside the measured window.
    pub fn in_window(&self) -> bool {
        self.seq >= WINDOW_SEQ_BASE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a header written into a padded payload reads back equal, for this run only.
    #[test]
    fn round_trip() {
        let header = Header {
            run_id: 0xDEAD_BEEF,
            publisher: 7,
            seq: WINDOW_SEQ_BASE + 3,
            sent_ns: 123_456_789,
        };
        let mut payload = vec![0u8; 64];
        header.write(&mut payload);
        assert_eq!(&payload[..4], b"ISB1");
        assert_eq!(Header::parse(&payload, 0xDEAD_BEEF), Parsed::Ours(header));
        assert_eq!(Header::parse(&payload, 1), Parsed::OtherRun);
        assert!(header.in_window());
    }

    /// Proves the exact byte layout, field by field.
    #[test]
    #[rustfmt::skip]
    fn layout() {
        let mut payload = [0u8; HEADER_LEN];
        Header { run_id: 1, publisher: 2, seq: 3, sent_ns: 4 }.write(&mut payload);
        assert_eq!(payload, [
            b'I', b'S', b'B', b'1',  // magic
            0, 0, 0, 1,              // run id 1
            0, 0, 0, 2,              // publisher 2
            0, 0, 0, 0, 0, 0, 0, 3,  // sequence 3 (warm-up: below the window base)
            0, 0, 0, 0, 0, 0, 0, 4,  // sent at 4 ns
        ]);
        match Header::parse(&payload, 1) {
            Parsed::Ours(h) => assert!(!h.in_window()),
            other => panic!("{other:?}"),
        }
    }

    /// Proves short or unrelated payloads are foreign, never a panic.
    #[test]
    fn foreign_payloads() {
        assert_eq!(Header::parse(b"", 1), Parsed::Foreign);
        assert_eq!(Header::parse(b"ISB1", 1), Parsed::Foreign);
        assert_eq!(Header::parse(&[0u8; 64], 1), Parsed::Foreign);
    }
}
