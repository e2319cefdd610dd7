//! Bytes encoded for one connection and not yet written to its socket.
//!
//! Small packets are encoded into one growing `tail`, so that many messages leave in one send; a
//! large payload is appended as a shared `Bytes` chunk (no copy), and the writer hands the chunks
//! to one vectored send. An idle connection holds no buffer at all: `release` gives the memory back.

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
}

impl OutBuf {
    pub fn len(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |i| i.chunks_len + i.tail.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    pub fn io_slices_upto<'a>(&'a self, slices: &mut [IoSlice<'a>], mut limit: usize) -> usize {
        let Some(inner) = &self.inner else { return 0 };
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

    /// The oldest unsent bytes (empty when nothing is pending).
    pub fn first_chunk(&self) -> &[u8] {
        let Some(inner) = &self.inner else { return &[] };
        inner.chunks.front().map_or(&inner.tail[..], |c| &c[..])
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len(), "advanced past the buffered bytes");
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
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

    /// Returns the buffers' memory when nothing is pending (an idle connection keeps none).
    pub fn release(&mut self) {
        if self.is_empty() {
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

    #[test]
    #[should_panic(expected = "advanced past")]
    fn advancing_too_far_is_a_bug() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"x");
        buf.advance(2);
    }
}
