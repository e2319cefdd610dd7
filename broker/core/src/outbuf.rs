//! Bytes encoded for one connection and not yet written to its socket.
//!
//! Small packets are encoded into one growing `tail`, so that many messages leave in one send; a
//! large payload is appended as a shared `Bytes` chunk (no copy), and the writer hands the chunks
//! to one vectored send. An idle connection holds no buffer at all: `release` gives the memory back.
//!
//! Part of the output may wait for the journal (`shard/durability.rs`): a **hold** says that the
//! bytes from a position on (counted from the first byte these buffers took) may not be written
//! before the journal's first `until` records are on disk. Holds come in the order of both, so
//! what may be written now is everything before the oldest hold's position: the bytes a writer
//! sees (`len`, `io_slices`, `first_chunk`) stop there, and `pending` counts them all. One
//! connection's acknowledgements then go as each one's own records are durable, not all of them
//! once its latest are: a publisher that never pauses would otherwise wait for its whole window.

use std::collections::VecDeque;
use std::io::IoSlice;

use ironsight_codec::{Bytes, BytesMut};

/// Payloads at least this large are sent from the message's own buffer instead of being copied.
pub const SHARED_PAYLOAD_MIN: usize = 4096;

/// One word while empty: the buffers live in a box allocated on the first write.
#[derive(Debug, Default)]
pub struct OutBuf {
    inner: Option<Box<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Frozen chunks, oldest first; all bytes of a chunk are unsent.
    chunks: VecDeque<Bytes>,
    chunks_len: usize,
    tail: BytesMut,
    /// Bytes written to the socket since these buffers were made: the position of the first
    /// unsent byte.
    written: u64,
    /// Output waiting for the journal, oldest first (positions and counts both rising).
    holds: VecDeque<Hold>,
}

/// The bytes from position `from` on wait until the journal's first `until` records are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    from: u64,
    until: u64,
}

impl Inner {
    fn pending(&self) -> usize {
        self.chunks_len + self.tail.len()
    }

    /// The unsent bytes that no hold keeps back.
    fn writable(&self) -> usize {
        let pending = self.pending();
        self.holds.front().map_or(pending, |hold| {
            let before = hold.from - self.written;
            pending.min(usize::try_from(before).unwrap_or(usize::MAX))
        })
    }
}

impl OutBuf {
    /// The bytes that may be written now: the unsent ones before any that wait for the journal.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.writable())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every unsent byte, those waiting for the journal too: what counts against the
    /// connection's send buffer.
    pub fn pending(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.pending())
    }

    /// Whether some output, written or still to come, waits for the journal.
    pub fn is_held(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| !i.holds.is_empty())
    }

    /// The position the next byte written will have: a mark for [`OutBuf::hold`].
    pub fn end(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.written + i.pending() as u64)
    }

    /// Keeps the bytes from position `from` (an [`OutBuf::end`] taken earlier) on, and all
    /// written after them, until the journal's first `until` records are durable. Returns
    /// whether `until` is new to this buffer (not one an earlier hold already waits for).
    pub fn hold(&mut self, from: u64, until: u64) -> bool {
        let inner = self.inner();
        assert!(
            from >= inner.written,
            "held output from {from} was written already (up to {})",
            inner.written
        );
        assert!(from <= inner.written + inner.pending() as u64);
        match inner.holds.back_mut() {
            Some(last) => {
                assert!(
                    from >= last.from && until >= last.until,
                    "holds out of order"
                );
                let new = until != last.until;
                if from == last.from {
                    last.until = until;
                } else if new {
                    inner.holds.push_back(Hold { from, until });
                }
                new
            }
            None => {
                inner.holds.push_back(Hold { from, until });
                true
            }
        }
    }

    /// The journal's first `durable` records are on disk: the output that waited for them may
    /// go. Returns whether any did.
    pub fn durable(&mut self, durable: u64) -> bool {
        let Some(inner) = self.inner.as_mut() else {
            return false;
        };
        let before = inner.holds.len();
        while inner.holds.front().is_some_and(|h| h.until <= durable) {
            inner.holds.pop_front();
        }
        inner.holds.len() != before
    }

    fn inner(&mut self) -> &mut Inner {
        self.inner.get_or_insert_with(Box::default)
    }

    /// Where small packets are encoded.
    pub fn tail(&mut self) -> &mut BytesMut {
        &mut self.inner().tail
    }

    /// Appends `bytes` after everything written so far, without copying it.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let inner = self.inner();
        if !inner.tail.is_empty() {
            let chunk = inner.tail.split().freeze();
            inner.chunks_len += chunk.len();
            inner.chunks.push_back(chunk);
        }
        inner.chunks_len += bytes.len();
        inner.chunks.push_back(bytes);
    }

    /// Fills `slices` with the unsent bytes, oldest first; returns how many slices were used.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.io_slices_upto(slices, usize::MAX)
    }

    /// As [`OutBuf::io_slices`], with at most `limit` bytes in all (the rest of a frame whose
    /// header announced that many).
    pub fn io_slices_upto<'a>(&'a self, slices: &mut [IoSlice<'a>], limit: usize) -> usize {
        let Some(inner) = &self.inner else { return 0 };
        let mut limit = limit.min(inner.writable());
        let sources = inner
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&inner.tail[..]));
        let mut used = 0;
        for (slot, bytes) in slices.iter_mut().zip(sources.filter(|b| !b.is_empty())) {
            if limit == 0 {
                break;
            }
            let bytes = &bytes[..bytes.len().min(limit)];
            limit -= bytes.len();
            *slot = IoSlice::new(bytes);
            used += 1;
        }
        used
    }

    /// The oldest bytes that may be written (empty when none may).
    pub fn first_chunk(&self) -> &[u8] {
        let Some(inner) = &self.inner else { return &[] };
        let first = inner.chunks.front().map_or(&inner.tail[..], |c| &c[..]);
        &first[..first.len().min(inner.writable())]
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len(), "advanced past the writable bytes");
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        inner.written += n as u64;
        while n > 0 {
            let Some(front) = inner.chunks.front_mut() else {
                let _ = inner.tail.split_to(n);
                break;
            };
            if n < front.len() {
                let _ = front.split_to(n);
                inner.chunks_len -= n;
                return;
            }
            n -= front.len();
            inner.chunks_len -= front.len();
            inner.chunks.pop_front();
        }
        if inner.tail.is_empty() {
            // Reuse the allocation from its start rather than creeping through it.
            inner.tail.clear();
        }
    }

    /// Returns the buffers' memory when nothing is pending or held (an idle connection keeps
    /// none).
    pub fn release(&mut self) {
        if self.pending() == 0 && !self.is_held() {
            self.inner = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn gather(buf: &OutBuf) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = buf.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn shared_chunks_keep_their_place_in_order() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"ab");
        buf.push_shared(Bytes::from_static(b"CDE"));
        buf.tail().put_slice(b"f");
        assert_eq!(buf.len(), 6);
        assert_eq!(gather(&buf), b"abCDEf");
    }

    #[test]
    fn advance_crosses_chunks() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"ab");
        buf.push_shared(Bytes::from_static(b"CDE"));
        buf.tail().put_slice(b"fg");
        buf.advance(3);
        assert_eq!(gather(&buf), b"DEfg");
        buf.advance(3);
        assert_eq!(gather(&buf), b"g");
        buf.advance(1);
        assert!(buf.is_empty());
        buf.release();
        assert!(buf.inner.is_none(), "an empty buffer gives its memory back");
    }

    #[test]
    fn slices_stop_at_the_limit() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"ab");
        buf.push_shared(Bytes::from_static(b"CDE"));
        buf.tail().put_slice(b"fg");
        let mut slices = [IoSlice::new(&[]); 8];
        let n = buf.io_slices_upto(&mut slices, 4);
        let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(bytes, b"abCD");
        assert_eq!(buf.io_slices_upto(&mut slices, 0), 0);
    }

    #[test]
    fn release_keeps_pending_bytes() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"xyz");
        buf.release();
        assert_eq!(gather(&buf), b"xyz");
    }

    /// Proves held bytes wait for their own records only: the first acknowledgement goes once
    /// the records it waits for are durable, though later ones were held since; bytes written
    /// before any hold go at once; and everything goes once the last hold's records are.
    #[test]
    fn each_hold_keeps_back_only_what_was_written_from_its_position() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"free");
        let first = buf.end();
        buf.tail().put_slice(b"ack1");
        assert!(buf.hold(first, 5));
        let second = buf.end();
        buf.tail().put_slice(b"ack2");
        assert!(buf.hold(second, 9));
        assert_eq!(gather(&buf), b"free");
        assert_eq!((buf.len(), buf.pending()), (4, 12));
        buf.advance(4);
        assert!(buf.is_empty());
        assert!(
            !buf.durable(4),
            "records up to 4 release nothing held for 5"
        );
        assert!(buf.durable(5));
        assert_eq!(gather(&buf), b"ack1", "ack2 waits for record 9");
        buf.advance(4);
        buf.push_shared(Bytes::from_static(b"later"));
        assert_eq!(buf.len(), 0, "written after a hold, it waits too");
        assert!(buf.durable(9));
        assert!(!buf.is_held());
        assert_eq!(gather(&buf), b"ack2later");
    }

    /// Proves a hold at the position of the last one waits for the later count, and one for a
    /// count already held for reports nothing new.
    #[test]
    fn holds_at_one_position_or_for_one_count_merge() {
        let mut buf = OutBuf::default();
        let at = buf.end();
        assert!(buf.hold(at, 3));
        assert!(buf.hold(at, 4), "the same place, a later count");
        buf.tail().put_slice(b"x");
        let later = buf.end();
        assert!(!buf.hold(later, 4), "a count already held for");
        assert!(!buf.durable(3), "the merged hold waits for 4");
        assert!(buf.durable(4));
        assert_eq!(gather(&buf), b"x");
    }

    /// Proves a buffer with a hold keeps its memory (and so its positions) while empty.
    #[test]
    fn a_held_buffer_is_not_released() {
        let mut buf = OutBuf::default();
        let at = buf.end();
        buf.hold(at, 1);
        buf.release();
        assert!(buf.is_held());
        assert!(buf.durable(1));
        buf.release();
        assert!(buf.inner.is_none());
    }

    #[test]
    #[should_panic(expected = "advanced past")]
    fn advancing_too_far_is_a_bug() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"x");
        buf.advance(2);
    }
}
